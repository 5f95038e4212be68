//! Recently finished executions, kept in memory for the poll path: a final state
//! never changes again, so `GET /executions/{id}` of one needs no store read (and no
//! hop to the database's thread). Bounded by count and by the bytes of their texts;
//! the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use airlock_store::ExecutionRow;

/// Executions kept at most.
const MAX_ROWS: usize = 4096;
/// Bytes of script and outputs kept at most (a row larger than an eighth of it is
/// not kept).
const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub(super) struct Finished {
    rows: HashMap<String, Arc<ExecutionRow>>,
    order: VecDeque<String>,
    bytes: usize,
}

fn size(r: &ExecutionRow) -> usize {
    r.script.len()
        + r.stdout.len()
        + r.stderr.len()
        + r.result.as_ref().map_or(0, String::len)
        + r.error.as_ref().map_or(0, String::len)
        + r.llm_exchanges
            .iter()
            .map(|x| x.prompt.len() + x.response.len())
            .sum::<usize>()
        + 512
}

impl Finished {
    pub(super) fn get(&self, id: &str) -> Option<Arc<ExecutionRow>> {
        self.rows.get(id).cloned()
    }

    /// Keeps a row in its final state (others are ignored).
    pub(super) fn keep(&mut self, row: Arc<ExecutionRow>) {
        let n = size(&row);
        if !row.status.is_terminal() || n > MAX_BYTES / 8 || self.rows.contains_key(&row.id) {
            return;
        }
        while self.rows.len() >= MAX_ROWS || self.bytes + n > MAX_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(r) = self.rows.remove(&old) {
                self.bytes -= size(&r);
            }
        }
        self.bytes += n;
        self.order.push_back(row.id.clone());
        self.rows.insert(row.id.clone(), row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::ExecutionStatus;

    fn row(id: &str, status: ExecutionStatus, stdout: usize) -> Arc<ExecutionRow> {
        let mut r = crate::compare::tests::exec(id, "", "1", "");
        r.status = status;
        r.stdout = "x".repeat(stdout);
        Arc::new(r)
    }

    #[test]
    fn keeps_final_states_only_within_its_bounds() {
        let mut f = Finished::default();
        f.keep(row("running", ExecutionStatus::Running, 0));
        assert!(f.get("running").is_none());
        f.keep(row("big", ExecutionStatus::Completed, MAX_BYTES / 8 + 1));
        assert!(f.get("big").is_none(), "too large to keep");
        for i in 0..MAX_ROWS + 1 {
            f.keep(row(&format!("e{i}"), ExecutionStatus::Completed, 0));
        }
        assert!(f.get("e0").is_none(), "the oldest went first");
        assert!(f.get(&format!("e{MAX_ROWS}")).is_some());
        assert_eq!(f.rows.len(), MAX_ROWS);
        // By bytes: eight rows at the size limit push the oldest out.
        let mut f = Finished::default();
        for i in 0..9 {
            f.keep(row(
                &format!("b{i}"),
                ExecutionStatus::Error,
                MAX_BYTES / 8 - 600,
            ));
        }
        assert!(f.get("b0").is_none() && f.get("b8").is_some());
        assert!(f.bytes <= MAX_BYTES);
    }
}
