//! Turning the `--allow-*` flags into [`Grants`], with the checks that can
//! be made before anything runs.

use std::net::ToSocketAddrs;
use std::path::PathBuf;

use durable::sandbox::{DirGrant, Grants};

use super::DriveArgs;

/// The grants the flags ask for.
///
/// # Errors
/// A message for the user: an unset variable, a missing directory, an
/// address that does not resolve.
pub fn parse(args: &DriveArgs) -> Result<Grants, String> {
    let mut grants = Grants::default();
    for spec in &args.allow_env {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = std::env::var(spec)
                    .map_err(|_| format!("--allow-env {spec}: {spec} is not set in this environment (use {spec}=VALUE)"))?;
                (spec.clone(), v)
            }
        };
        if name.is_empty() {
            return Err(format!("--allow-env {spec}: empty variable name"));
        }
        grants.env.push((name, value));
    }
    for (specs, read_only) in [(&args.allow_dir, false), (&args.allow_dir_ro, true)] {
        for spec in specs {
            grants.dirs.push(dir(spec, read_only)?);
        }
    }
    for spec in &args.allow_tcp {
        let addrs: Vec<_> = spec
            .to_socket_addrs()
            .map_err(|e| format!("--allow-tcp {spec}: {e} (expected HOST:PORT)"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("--allow-tcp {spec}: no address"));
        }
        grants.tcp_connect.extend(addrs);
    }
    Ok(grants)
}

fn dir(spec: &str, read_only: bool) -> Result<DirGrant, String> {
    let flag = if read_only {
        "--allow-dir-ro"
    } else {
        "--allow-dir"
    };
    let (host, guest) = match spec.split_once("::") {
        Some((h, g)) => (h, g.to_string()),
        None => (spec, spec.to_string()),
    };
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(format!(
            "{flag} {spec}: {} is not a directory",
            host.display()
        ));
    }
    if guest.is_empty() {
        return Err(format!("{flag} {spec}: empty guest path"));
    }
    Ok(DirGrant {
        host,
        guest,
        read_only,
    })
}
