//! `mint_es256`: signs an ES256 token for the load test.
//!
//! ```text
//! mint_es256 --key ec_private.pem --iss ISSUER --tenant T --role R --sub S [--ttl SECONDS]
//! ```
//!
//! The key is a PEM P-256 private key (PKCS#8 or SEC1). The claims are
//! `sub`, `tenant_id`, `role`, `iss`, `iat` and `exp`, as the tenancy
//! realms expect them; the token goes to stdout.
// Printing the token is the purpose of this binary.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tenancy_core::credential::JwtClaims;

const USAGE: &str =
    "usage: mint_es256 --key PEM --iss ISSUER --tenant T --role R --sub S [--ttl SECONDS]";

struct Args {
    key: String,
    iss: String,
    tenant: String,
    role: String,
    sub: String,
    ttl: u64,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut key, mut iss, mut tenant, mut role, mut sub) = (None, None, None, None, None);
    let mut ttl = 3600;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--key" => key = Some(value),
            "--iss" => iss = Some(value),
            "--tenant" => tenant = Some(value),
            "--role" => role = Some(value),
            "--sub" => sub = Some(value),
            "--ttl" => {
                ttl = value
                    .parse()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or("--ttl: expected seconds")?
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    match (key, iss, tenant, role, sub) {
        (Some(key), Some(iss), Some(tenant), Some(role), Some(sub)) => Ok(Args {
            key,
            iss,
            tenant,
            role,
            sub,
            ttl,
        }),
        _ => Err(USAGE.to_owned()),
    }
}

fn mint(args: &Args) -> Result<String, String> {
    let pem = std::fs::read(&args.key).map_err(|e| format!("{}: {e}", args.key))?;
    let key = EncodingKey::from_ec_pem(&pem)
        .map_err(|e| format!("{}: not a P-256 private key: {e}", args.key))?;
    let claims = JwtClaims::new(
        &args.iss,
        &args.sub,
        &args.role,
        Duration::from_secs(args.ttl),
    )
    .with_tenant(&args.tenant);
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key)
        .map_err(|e| format!("cannot sign: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|a| mint(&a)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint_es256: {e}");
            ExitCode::from(2)
        }
    }
}
