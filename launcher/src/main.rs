//! `duo-bedrock`: renders the Envoy config from the AI Gateway's environment variables and runs
//! the sidecar (Envoy with the duo-bedrock filter), the `make run` and container entry point.
//!
//! Secrets never touch the disk: AWS keys reach the wasm VM through Envoy's
//! `environment_variables.host_env_keys`, i.e. through this process's environment. The config is
//! passed to Envoy inline (`--config-yaml`): the launcher writes no file (a read-only root
//! filesystem is fine); only with `ENVOY_ADMIN_PORT=0` does it create a private directory under
//! `$TMPDIR` for Envoy's `--admin-address-path`.

mod env;
mod pyish;
mod render;
mod say;
mod supervise;
mod tokens;

use env::{ConfigError, Env};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
Render the Envoy config from the AI Gateway's environment variables and run the sidecar.

    duo-bedrock [run]               run Envoy in the foreground (the `make run` and container
                                    entry point); SIGTERM drains the requests in flight first
    duo-bedrock render [--out FILE] write the rendered Envoy YAML (stdout by default)

`run` is a drop-in for the gateway container: it reads the same variables as
`docker run ... model-gateway:self-hosted-...` (README.md has the table). With no AWS
credentials and no AWS_BEDROCK_RUNTIME_ENDPOINT it starts the bundled emulator as both
the Bedrock endpoint and the GitLab OIDC issuer, and says so (offline demo).

Files: ENVOY_BIN, DUO_FILTER_WASM and DUO_EMULATOR_BIN, else the repository's build outputs
(next to this binary's target/ directory), else /usr/local/bin/envoy,
/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm and /usr/local/bin/bedrock-emulator
(`envoy` is also looked up in PATH).
";

/// Exit status of a configuration error (and of a usage error).
const EXIT_CONFIG: i32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // JSON lines from the first line on (an invalid value is reported, as text, by the render).
    say::set_json(
        Env::from_process()
            .pydantic_bool("AIGW_LOGGING__FORMAT_JSON", false)
            .unwrap_or(false),
    );
    let code = match args.as_slice() {
        [] | ["run"] => supervise::run(),
        ["render"] => render_command(None),
        ["render", "--out", file] => render_command(Some(Path::new(file))),
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            0
        }
        _ => {
            eprint!("{USAGE}");
            EXIT_CONFIG
        }
    };
    std::process::exit(code);
}

fn render_command(out: Option<&Path>) -> i32 {
    let env = Env::from_process();
    let socket = tokens::socket_name(std::process::id());
    let text = match render::render(&env, &wasm_path(&env), &socket) {
        Ok(t) => t,
        Err(e) => return config_error(&e),
    };
    if render::serves_token_files(&env) {
        eprintln!(
            "note: the token-file cluster names @{socket}, which only `duo-bedrock run` serves \
             (with its own process id)"
        );
    }
    let written = match out {
        Some(file) => std::fs::write(file, &text),
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()),
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            let to = out.map_or("stdout".into(), |f| f.display().to_string());
            say::error("error", &format!("duo-bedrock: cannot write {to}: {e}"));
            1
        }
    }
}

pub fn config_error(e: &ConfigError) -> i32 {
    say::error("error", &format!("configuration error: {e}"));
    EXIT_CONFIG
}

/// The repository this binary was built in (`<repo>/target/<profile>/duo-bedrock`), if any.
fn repo_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    if target.file_name()? != "target" {
        return None;
    }
    target.parent().map(Path::to_path_buf)
}

/// `var` if set, else the repository's build output if it exists, else the image's path.
fn locate(env: &Env, var: &str, in_repo: &str, in_image: &str) -> PathBuf {
    if let Some(p) = env.get(var) {
        return PathBuf::from(p);
    }
    repo_root()
        .map(|r| r.join(in_repo))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(in_image))
}

pub fn wasm_path(env: &Env) -> String {
    locate(
        env,
        "DUO_FILTER_WASM",
        "target/wasm32-wasip1/release/duo_bedrock_filter.wasm",
        "/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm",
    )
    .display()
    .to_string()
}

pub fn emulator_path(env: &Env) -> PathBuf {
    locate(
        env,
        "DUO_EMULATOR_BIN",
        "target/release/bedrock-emulator",
        "/usr/local/bin/bedrock-emulator",
    )
}

/// `name` if it names a file, else its match in PATH.
fn which(name: &Path) -> Option<PathBuf> {
    if name.exists() {
        return Some(name.to_path_buf());
    }
    if name.components().count() != 1 {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The Envoy binary: ENVOY_BIN, else the repository's `.venv/bin/envoy`, else the image's
/// `/usr/local/bin/envoy`, else `envoy` in PATH.
pub fn envoy_path(env: &Env) -> Result<PathBuf, ConfigError> {
    if let Some(p) = env.get("ENVOY_BIN") {
        return which(Path::new(&p)).ok_or_else(|| {
            ConfigError(format!(
                "ENVOY_BIN={p}: no such file: run `make envoy` first"
            ))
        });
    }
    let candidates = [
        repo_root().map(|r| r.join(".venv/bin/envoy")),
        Some(PathBuf::from("/usr/local/bin/envoy")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .or_else(|| which(Path::new("envoy")))
        .ok_or_else(|| {
            ConfigError("envoy is missing: set ENVOY_BIN, or run `make envoy` first".into())
        })
}
