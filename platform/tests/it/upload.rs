//! Package upload: real images through Docker, version rules, and failures that leave no trace.
