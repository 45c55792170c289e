//! Progress bars on stderr for long work (see `engine::progress`), drawn
//! only while stderr is a terminal: scripts, logs and a daemon's log file
//! get nothing extra.

use std::io::IsTerminal;

use caskfs::engine::progress::{Progress, set_reporter};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

const TEMPLATE: &str = "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}";

struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, what: &str, total: u64) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::new(total)
            .with_style(style)
            .with_message(what.to_string());
        if let Some(old) = self.current.lock().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &*self.current.lock() {
            bar.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.current.lock().take() {
            bar.finish_and_clear();
        }
    }
}

/// Shows progress bars from now on, where stderr is a terminal.
pub fn install() {
    set_reporter(Box::new(Bars {
        current: Mutex::new(None),
    }));
}
