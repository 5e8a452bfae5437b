//! The last log lines in memory, for the admin pages' log view: a bounded
//! ring (at most [`LINES`] lines of at most [`LINE_BYTES`] bytes each, so at
//! most about 1 MiB), filled by the `mta` binary's logging beside standard
//! error or the journal. Peer text in them is already escaped
//! (`logsafe`).

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

pub const LINES: usize = 1000;
pub const LINE_BYTES: usize = 1024;

#[derive(Default)]
pub struct Ring {
    lines: Mutex<VecDeque<String>>,
}

/// The process's ring.
pub fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(Ring::default)
}

impl Ring {
    /// Adds one line (cut at [`LINE_BYTES`] on a character boundary).
    pub fn push(&self, line: &str) {
        let mut line = line.trim_end().to_string();
        if line.len() > LINE_BYTES {
            let mut cut = LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.lines.lock().expect("log ring");
        if lines.len() == LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The newest lines first, those containing `filter` (any case), at
    /// most `max`.
    pub fn recent(&self, filter: &str, max: usize) -> Vec<String> {
        let filter = filter.to_lowercase();
        self.lines
            .lock()
            .expect("log ring")
            .iter()
            .rev()
            .filter(|l| filter.is_empty() || l.to_lowercase().contains(&filter))
            .take(max)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_bounded() {
        let ring = Ring::default();
        for i in 0..LINES + 10 {
            ring.push(&format!("line {i}\n"));
        }
        let all = ring.recent("", usize::MAX);
        assert_eq!(all.len(), LINES);
        assert_eq!(all[0], format!("line {}", LINES + 9));
        assert_eq!(
            ring.recent("LINE 100", 5),
            [
                "line 1009",
                "line 1008",
                "line 1007",
                "line 1006",
                "line 1005"
            ]
        );
        ring.push(&"é".repeat(LINE_BYTES));
        assert!(ring.recent("", 1)[0].len() <= LINE_BYTES + '…'.len_utf8());
    }
}
