//! `sync`: flags → [`app::ApplyOptions`] with the mapped groups as the source (the desired
//! state is read from Identity Center, not a file); the removals confirmed (`--yes`, or
//! "yes" typed on a terminal) before the first write; then what `apply` shows: the plan,
//! the saved plan as JSON, or the outcomes.

use crate::app::{self, Context};

use super::apply::{print_apply, print_removals};
use super::args::{GlobalArgs, SyncArgs};
use super::{confirm_on_terminal, counted, exit, quiet, Outputs, Slot, Waits};

/// Runs `sync`.
pub(super) async fn sync(g: &GlobalArgs, a: SyncArgs) -> Result<u8, app::Error> {
    let json = g.json;
    let waits = Waits::default();
    let ctx = Context::load(&counted(g, &waits))?;
    let opts = app::ApplyOptions {
        source: app::ApplySource::Groups,
        clear_empty: false,
        prune: a.prune,
        max_remove: a.max_remove,
        skip_invalid: true,
        run: app::RunOptions {
            dry_run: a.dry_run,
            concurrency: a.concurrency,
            bulk_reads: app::BulkReads::Always,
        },
    };
    let mut outs = Outputs::new(a.report.as_deref(), None, json, a.dry_run, waits);
    outs.changes_column = true;
    let slot = std::cell::RefCell::new(Some(outs));
    let yes = a.yes;
    let mut confirm = |removals: &[app::PlanRow]| {
        if yes {
            return Ok(());
        }
        print_removals("sync --prune", removals);
        confirm_on_terminal("Delete the Connect users listed above?", "sync --prune")
    };
    let mut sink = Slot(&slot);
    let out = app::apply(&ctx, &opts, &quiet(a.on_failure), &mut confirm, &mut sink).await;
    let outs = slot.take();
    if let Some(o) = outs {
        o.close()?;
    }
    let report = out?;
    print_apply(&report, json);
    Ok(exit::for_apply(&report))
}
