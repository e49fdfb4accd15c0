//! Berth on Docker Swarm, against real multi-node labs (`swarm-lab`), each test with a lab of
//! its own brought up and down inside it.

mod engines;
mod lab;
mod restarts;
mod rollout;
mod runtime;
mod serve;
mod watch;
