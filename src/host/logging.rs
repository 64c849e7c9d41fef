//! The filter's logger: `log` records to Envoy (`proxy_log`), as text or, with
//! `AIGW_LOGGING__FORMAT_JSON`, as JSON objects carrying the id of the request they concern
//! ([`crate::logline`]). Replaces proxy-wasm's own logger, whose `log` unwraps the hostcall's
//! status, and installs the same panic hook (a panic's message reaches Envoy's log).

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use crate::logline::{self, LogFormat};

struct FilterLogger;

static LOGGER: FilterLogger = FilterLogger;

thread_local! {
    static FORMAT: Cell<LogFormat> = const { Cell::new(LogFormat::Text) };
    /// The id of the request whose callback is running (empty: none), while a [`RequestScope`]
    /// lives. Only kept in JSON mode (text messages do not carry it).
    static REQUEST_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs the logger and the panic hook, at `level`.
pub fn init(level: LogLevel) {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let _ = hostcalls::log(LogLevel::Critical, &info.to_string());
        }));
    }
    set_level(level);
}

/// Drops records below `level` before they are formatted.
pub fn set_level(level: LogLevel) {
    log::set_max_level(match level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Critical => log::LevelFilter::Off,
    });
}

/// The configured format (`Config::log_format`), for every later message of this VM.
pub fn set_format(format: LogFormat) {
    FORMAT.with(|f| f.set(format));
}

/// Marks the messages logged until it is dropped as concerning the request `request_id`.
pub struct RequestScope(());

impl RequestScope {
    pub fn enter(request_id: &str) -> RequestScope {
        set_request_id(request_id);
        RequestScope(())
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        set_request_id("");
    }
}

/// The id of the current request, once known (within a [`RequestScope`]).
pub fn set_request_id(request_id: &str) {
    if FORMAT.with(Cell::get) != LogFormat::Json {
        return;
    }
    REQUEST_ID.with(|id| {
        if let Ok(mut id) = id.try_borrow_mut() {
            id.clear();
            id.push_str(request_id);
        }
    });
}

/// The request's one record (see [`logline::record`]), at info level.
pub fn record(fields: &logline::RequestRecord<'_>) {
    if log::max_level() < log::LevelFilter::Info {
        return;
    }
    let _ = hostcalls::log(
        LogLevel::Info,
        &logline::record(FORMAT.with(Cell::get), fields),
    );
}

impl log::Log for FilterLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let text = record.args().to_string();
        let message = match FORMAT.with(Cell::get) {
            LogFormat::Text => text,
            LogFormat::Json => REQUEST_ID.with(|id| {
                let id = id.try_borrow().ok();
                logline::message(LogFormat::Json, &text, id.as_deref().map(String::as_str))
            }),
        };
        let _ = hostcalls::log(level, &message);
    }

    fn flush(&self) {}
}
