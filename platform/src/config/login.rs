//! The password-guessing limits, merged from flags, the file and the defaults.

use std::time::Duration;

use super::args::ServeArgs;
use super::file::FileConfig;
use super::parse::invalid;
use super::*;

/// The login settings given as flags or variables.
pub(super) fn args_login(args: &ServeArgs) -> [Option<u64>; 4] {
    [
        args.login_user_failures.map(u64::from),
        args.login_source_failures.map(u64::from),
        args.login_failure_window,
        args.login_lockout,
    ]
}

/// Validates the password-guessing limits (flag > file > default).
pub(super) fn login_limits(
    args: &[Option<u64>; 4],
    file: &FileConfig,
) -> Result<crate::auth::throttle::Limits, ConfigError> {
    let file_values = [
        file.login_user_failures.map(u64::from),
        file.login_source_failures.map(u64::from),
        file.login_failure_window,
        file.login_lockout,
    ];
    let defaults = [
        u64::from(DEFAULT_LOGIN_USER_FAILURES),
        u64::from(DEFAULT_LOGIN_SOURCE_FAILURES),
        DEFAULT_LOGIN_FAILURE_WINDOW,
        DEFAULT_LOGIN_LOCKOUT,
    ];
    let names = [
        "login_user_failures",
        "login_source_failures",
        "login_failure_window",
        "login_lockout",
    ];
    let mut values = [0u64; 4];
    for i in 0..4 {
        values[i] = args[i].or(file_values[i]).unwrap_or(defaults[i]);
        if values[i] == 0 || values[i] > 1_000_000 {
            return Err(invalid(
                names[i],
                &values[i].to_string(),
                "must be from 1 to 1000000",
            ));
        }
    }
    Ok(crate::auth::throttle::Limits {
        user_failures: u32::try_from(values[0]).unwrap_or(u32::MAX),
        source_failures: u32::try_from(values[1]).unwrap_or(u32::MAX),
        window: Duration::from_secs(values[2]),
        lockout: Duration::from_secs(values[3]),
    })
}
