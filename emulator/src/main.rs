//! Command line of `bedrock-emulator`: `serve`, `mint`, `jwks`.
//! See `emulator/README.md` for the full description.

use bedrock_emulator::oidc::{self, Audience, MintRequest};
use bedrock_emulator::server::{self, Config};
use std::io::Write;
use std::net::SocketAddr;

const USAGE: &str = "\
usage:
  bedrock-emulator serve [--listen 127.0.0.1:0] [--access-key-id AKID --secret-access-key SECRET]
                         [--region REGION] [--reply TEXT] [--issuer URL] [--api-key KEY]
                         [--latency-ms N] [--container-token TOKEN] [--creds-ttl SECS]
                         [--imds-role NAME] [--verbose]
      env defaults: EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY, EMULATOR_REGION,
                    EMULATOR_API_KEY (default credentials: AKIDEXAMPLE / the AWS example secret)
  bedrock-emulator mint [--issuer URL] [--key demo-1|demo-2] [--scopes a,b,...] [--ttl 3600]
                        [--aud gitlab-ai-gateway[,more]] [--sub ID] [--realm self-managed]
                        [--instance-id ID] [--iat N] [--nbf N] [--exp N]
  bedrock-emulator jwks [--keys demo-1,demo-2]
";

fn fail(msg: &str) -> ! {
    eprintln!("bedrock-emulator: {msg}\n{USAGE}");
    std::process::exit(2);
}

/// Split `--name value` / `--name=value` arguments; flags without a value
/// listed in `switches` map to "true".
fn parse_flags(args: &[String], switches: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(name) = a.strip_prefix("--") else {
            fail(&format!("unexpected argument {a:?}"));
        };
        if let Some((n, v)) = name.split_once('=') {
            out.push((n.to_string(), v.to_string()));
        } else if switches.contains(&name) {
            out.push((name.to_string(), "true".to_string()));
        } else {
            let Some(v) = args.get(i + 1) else {
                fail(&format!("--{name} needs a value"));
            };
            out.push((name.to_string(), v.clone()));
            i += 1;
        }
        i += 1;
    }
    out
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| fail(&format!("--{name}: not a number: {v:?}")))
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn serve_config(args: &[String]) -> Config {
    let mut c = Config::default();
    if let Some(v) = env("EMULATOR_ACCESS_KEY_ID") {
        c.access_key_id = v;
    }
    if let Some(v) = env("EMULATOR_SECRET_ACCESS_KEY") {
        c.secret_access_key = v;
    }
    c.region = env("EMULATOR_REGION");
    c.api_key = env("EMULATOR_API_KEY");
    for (name, v) in parse_flags(args, &["verbose"]) {
        match name.as_str() {
            "listen" => {
                c.listen = v
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|_| fail(&format!("--listen: bad address {v:?}")))
            }
            "access-key-id" => c.access_key_id = v,
            "secret-access-key" => c.secret_access_key = v,
            "region" => c.region = Some(v).filter(|r| !r.is_empty()),
            "reply" => c.reply = v,
            "issuer" => c.issuer = Some(v),
            "api-key" => c.api_key = Some(v),
            "latency-ms" => c.latency_ms = num(&name, &v),
            "container-token" => c.creds.container_token = Some(v).filter(|t| !t.is_empty()),
            "creds-ttl" => {
                c.creds.ttl_secs = num(&name, &v);
                if c.creds.ttl_secs == 0 {
                    fail("--creds-ttl must be at least 1");
                }
            }
            "imds-role" => {
                if !bedrock_emulator::creds::valid_role(&v) {
                    fail("--imds-role: IAM role names use up to 64 of [A-Za-z0-9+=,.@_-]");
                }
                c.creds.role = v
            }
            "verbose" => c.verbose = v != "false",
            other => fail(&format!("unknown option --{other}")),
        }
    }
    c
}

fn serve(args: &[String]) {
    let config = serve_config(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start runtime: {e}")));
    rt.block_on(async move {
        let running = match server::start(config.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bedrock-emulator: cannot listen on {}: {e}", config.listen);
                std::process::exit(1);
            }
        };
        eprintln!(
            "bedrock-emulator: issuer {} · access key {} · region {} · api key {}",
            running.issuer,
            config.access_key_id,
            config.region.as_deref().unwrap_or("(any)"),
            if config.api_key.is_some() {
                "on"
            } else {
                "off"
            },
        );
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "bedrock-emulator listening on http://{}", running.addr);
            let _ = out.flush();
        }
        wait_for_signal().await;
        eprintln!("bedrock-emulator: shutting down");
        running.shutdown().await;
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn mint(args: &[String]) {
    let mut req = MintRequest::default();
    let mut issuer = oidc::DEFAULT_CLI_ISSUER.to_string();
    for (name, v) in parse_flags(args, &[]) {
        match name.as_str() {
            "issuer" | "iss" => issuer = v,
            "key" => req.key = Some(v),
            "scopes" => req.scopes = Some(list(&v)),
            "ttl" => req.ttl = Some(num(&name, &v)),
            "aud" => req.aud = Some(Audience::Many(list(&v))),
            "sub" => req.sub = Some(v),
            "realm" => req.realm = Some(v),
            "instance-id" => req.instance_id = Some(v),
            "iat" => req.iat = Some(num(&name, &v)),
            "nbf" => req.nbf = Some(num(&name, &v)),
            "exp" => req.exp = Some(num(&name, &v)),
            other => fail(&format!("unknown option --{other}")),
        }
    }
    match oidc::mint(&req, &issuer, bedrock_emulator::ids::unix_now()) {
        Ok(t) => println!("{t}"),
        Err(e) => fail(&e),
    }
}

fn jwks(args: &[String]) {
    let mut keys = vec!["demo-1".to_string()];
    for (name, v) in parse_flags(args, &[]) {
        match name.as_str() {
            "keys" => keys = list(&v),
            other => fail(&format!("unknown option --{other}")),
        }
    }
    if let Some(bad) = keys.iter().find(|k| oidc::demo_key(k).is_none()) {
        fail(&format!("unknown key {bad:?}"));
    }
    println!("{}", oidc::jwks(&keys));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("mint") => mint(&args[1..]),
        Some("jwks") => jwks(&args[1..]),
        Some("-h") | Some("--help") | Some("help") => print!("{USAGE}"),
        _ => fail("missing or unknown subcommand"),
    }
}
