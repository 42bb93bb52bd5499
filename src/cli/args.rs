//! The command line's shape: clap definitions of the global flags and every command, and
//! `iam-policy --for`'s values, which are `app::PolicyFor`'s own.

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::PolicyFor;

/// Onboard Amazon Connect agents into Connect and IAM Identity Center, safely and resumably.
#[derive(Parser, Debug)]
#[command(name = "connect-onboard", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Config file [default: connect-onboard.toml].
    #[arg(long, global = true, value_name = "CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// State file, or a shared table `dynamodb://TABLE[?region=R]` (overrides [state]).
    #[arg(long, global = true, value_name = "PATH|dynamodb://TABLE")]
    pub(crate) state: Option<PathBuf>,
    /// Use an edited workflow file instead of the built-in one.
    #[arg(long, global = true)]
    pub(crate) workflow: Option<PathBuf>,
    /// AWS profile (else the standard chain: AWS_PROFILE, ...).
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,
    /// AWS region for every service (else the config, then the standard chain).
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Read the password (CONNECT_MANAGED instances) from stdin instead of CONNECT_ONBOARD_PASSWORD.
    #[arg(long, global = true)]
    pub(crate) password_stdin: bool,
}

impl GlobalArgs {
    /// The config file: `--config`, else `connect-onboard.toml`.
    pub(crate) fn config_path(&self) -> PathBuf {
        (self.config.clone()).unwrap_or_else(|| PathBuf::from("connect-onboard.toml"))
    }
}

/// `state` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum StateAction {
    /// Copy every run of FROM into TO (SQLite ↔ DynamoDB); a run TO holds with other
    /// content refuses the copy before anything is written.
    Copy {
        /// The store to copy from: a state file, or dynamodb://TABLE[?region=R].
        from: String,
        /// The store to copy into (a table must exist: `init --state dynamodb://TABLE`).
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Onboard one agent.
    Onboard(Box<OnboardArgs>),
    /// Finish every interrupted or unfinished agent (of one run, or of all runs).
    Resume {
        /// Run id (all runs when absent).
        run_id: Option<String>,
        /// Agents in flight at once (the per-API rate limits hold each quota).
        #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
        concurrency: usize,
    },
    /// Remove what a run created, for the whole run or one agent. Rolling back an agent
    /// that is done deletes working users: the plan is shown and confirmed first (--yes off
    /// a terminal).
    Rollback {
        /// Run id.
        run_id: String,
        /// Only this agent.
        #[arg(long)]
        email: Option<String>,
        /// Print what would be removed; touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Roll back done agents without asking (needed off a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Close an agent that needs attention: keep its leftovers, stop managing them.
    Release {
        /// Run id.
        run_id: String,
        /// The agent.
        #[arg(long)]
        email: String,
    },
    /// Onboard every agent of a file (the console's bulk-upload CSV, native CSV or JSON Lines).
    Batch {
        /// The agent file.
        file: PathBuf,
        /// Report invalid rows and onboard the valid ones (else: exit 2, nothing written).
        #[arg(long)]
        skip_invalid: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Move the instance's existing Connect agents to IAM Identity Center: adopt each Connect
    /// user, create its Identity Center user (UserName = the Connect username, case kept),
    /// group membership and assignment.
    Migrate {
        /// Only users with this routing profile (name or id; repeatable).
        #[arg(long = "routing-profile", value_name = "NAME")]
        routing_profiles: Vec<String>,
        /// Only users with this security profile (name or id; repeatable).
        #[arg(long = "security-profile", value_name = "NAME")]
        security_profiles: Vec<String>,
        /// Only users in this hierarchy group (name or id).
        #[arg(long, value_name = "NAME")]
        hierarchy_group: Option<String>,
        /// Only these usernames (one per line, exactly as in Connect).
        #[arg(long, value_name = "FILE")]
        usernames: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Remove leavers: the user's application assignment (user mode), group membership,
    /// Identity Center user and Connect user. Deletes are irreversible: the plan is shown
    /// and confirmed first (--yes off a terminal).
    #[command(override_usage = "connect-onboard offboard (EMAIL... | --file FILE) [OPTIONS]")]
    Offboard(Box<OffboardArgs>),
    /// Bring the instance's agents to a roster (any `batch` format) as desired state:
    /// create, update, leave unchanged, and with --prune remove the managed agents not in
    /// it; or apply a saved plan (--plan) exactly.
    #[command(override_usage = "connect-onboard apply (FILE | --plan PLAN.json) [OPTIONS]")]
    Apply(Box<ApplyArgs>),
    /// Provision Connect from the identity provider: every direct member of a mapped
    /// Identity Center group (`[[sync.groups]]`) is a desired agent, converged as `apply`
    /// converges a roster; the Identity Center user is adopted, never created or deleted;
    /// with --prune, the Connect users of members who left every mapped group are deleted.
    Sync(Box<SyncArgs>),
    /// Try every failed, rolled-back or interrupted agent again, after fixing the cause.
    Retry {
        /// Run id (all runs when absent).
        run_id: Option<String>,
        /// Corrected rows for those agents (any `batch` format; matched by email).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Agents in flight at once (the per-API rate limits hold each quota).
        #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
        concurrency: usize,
    },
    /// The state store itself: `state copy FROM TO` copies every run of one store into
    /// another (a file path or dynamodb://TABLE[?region=R]).
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Per run, agent and step: state, resource ids, owned or adopted, attempts, errors.
    Status {
        /// Run id (all runs when absent).
        run_id: Option<String>,
    },
    /// Write a commented example config file; with `--state dynamodb://TABLE`, create
    /// that shared state table instead (idempotent).
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Serve the local AWS emulator (Connect, Identity Store, SSO Admin) until Ctrl-C.
    Sandbox {
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 4566)]
        port: u16,
        /// Seed file (TOML or JSON) replacing the default world.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// Fault rules file (TOML or JSON).
        #[arg(long)]
        faults: Option<PathBuf>,
    },
    /// Run the main job locally: start the sandbox in-process and onboard two sample agents.
    Demo,
    /// Why can this agent not sign in? Read-only checks of Connect, Identity Center and
    /// connect-onboard's state, each with its evidence and fix.
    Doctor {
        /// The agent's email or Connect username.
        #[arg(value_name = "EMAIL_OR_USERNAME")]
        who: String,
    },
    /// Classify every agent of both sides (read-only); `--fix-plan DIR` writes the files
    /// the fixes need, for review.
    Drift {
        /// Write migrate-usernames.txt, batch.csv and offboard.csv here.
        #[arg(long, value_name = "DIR")]
        fix_plan: Option<PathBuf>,
    },
    /// Print the least-privilege IAM policy (JSON) for the configured target.
    IamPolicy {
        /// Which command's permissions.
        #[arg(long = "for", value_enum, default_value = "all")]
        for_: PolicyFor,
        /// The event queue of `sync --watch --queue` (its URL): adds receiving, deleting and
        /// extending its messages, on that queue only.
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
    },
}

/// `iam-policy --for`: the values and names are `app`'s.
impl ValueEnum for PolicyFor {
    fn value_variants<'a>() -> &'a [Self] {
        &PolicyFor::EVERY
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

#[derive(Args, Debug)]
pub(crate) struct OnboardArgs {
    /// The agent's email: Connect username (SAML), Identity Center user name and primary email.
    #[arg(long)]
    pub(crate) email: String,
    /// First name.
    #[arg(long)]
    pub(crate) first_name: String,
    /// Last name.
    #[arg(long)]
    pub(crate) last_name: String,
    /// Connect username when it is not the email (CONNECT_MANAGED / EXISTING_DIRECTORY only).
    #[arg(long)]
    pub(crate) username: Option<String>,
    /// Routing profile name or id.
    #[arg(long)]
    pub(crate) routing_profile: Option<String>,
    /// Security profile name or id (repeatable).
    #[arg(long = "security-profile")]
    pub(crate) security_profiles: Vec<String>,
    /// Hierarchy group name or id.
    #[arg(long)]
    pub(crate) hierarchy_group: Option<String>,
    /// Phone type.
    #[arg(long, value_enum)]
    pub(crate) phone_type: Option<PhoneArg>,
    /// Desk phone number (E.164), for --phone-type desk.
    #[arg(long)]
    pub(crate) desk_phone_number: Option<String>,
    /// Auto-accept contacts.
    #[arg(long)]
    pub(crate) auto_accept: bool,
    /// After-contact-work timeout in seconds (0 = no limit).
    #[arg(long)]
    pub(crate) acw_timeout: Option<i64>,
    /// Secondary email (notifications).
    #[arg(long)]
    pub(crate) secondary_email: Option<String>,
    /// Mobile number (E.164).
    #[arg(long)]
    pub(crate) mobile: Option<String>,
    /// Directory user id (EXISTING_DIRECTORY instances).
    #[arg(long)]
    pub(crate) directory_user_id: Option<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    pub(crate) tags: Vec<(String, String)>,
    /// Print the plan (create / adopt / conflict per step) without writing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// On a permanent failure: remove what this run created, or keep it.
    #[arg(long, value_enum, default_value = "rollback")]
    pub(crate) on_failure: OnFailureArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PhoneArg {
    Soft,
    Desk,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum OnFailureArg {
    Rollback,
    Keep,
}

/// The most agents in flight at once: far past what any AWS quota lets progress (the
/// per-API rate limiter, not this, holds each quota), and memory follows it.
pub(crate) const MAX_CONCURRENCY: usize = 1_000;

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {MAX_CONCURRENCY} (agents in flight at once; the per-API rate limiter holds each quota)"
        )),
    }
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("invalid tag {s:?}: expected KEY=VALUE"))
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum BulkReadsArg {
    Auto,
    Always,
    Never,
}

/// How `batch` and `migrate` run their agents, and what they write.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Plan every agent (create / adopt / conflict per step); write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write one row per agent to FILE (.csv, or .json/.jsonl for JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Write a sign-in notice per onboarded agent, and notices.csv, into DIR.
    #[arg(long, value_name = "DIR")]
    pub(crate) notices: Option<PathBuf>,
    /// Agents in flight at once (the per-API rate limits hold each quota).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// List each directory once (auto: from 20 agents) instead of a lookup per agent.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) bulk_reads: BulkReadsArg,
    /// On a permanent failure: remove what this agent's run created, or keep it.
    #[arg(long, value_enum, default_value = "rollback")]
    pub(crate) on_failure: OnFailureArg,
}

#[derive(Args, Debug)]
pub(crate) struct ApplyArgs {
    /// The roster: one row per agent, its desired state (console template, native CSV or
    /// JSON Lines).
    #[arg(
        value_name = "FILE",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub(crate) file: Option<PathBuf>,
    /// Apply exactly this saved plan (`apply FILE --dry-run --json > PLAN.json`).
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["clear_empty", "dry_run"])]
    pub(crate) plan: Option<PathBuf>,
    /// Print the plan (per agent: create, update with each change, unchanged, remove,
    /// conflict) without writing anything; with --json, the saved plan.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// An empty cell clears the field where it may be empty (hierarchy group, secondary
    /// email, mobile, desk phone number); without it an empty cell keeps the field.
    #[arg(long)]
    pub(crate) clear_empty: bool,
    /// Remove the managed agents (Identity Center user in the agents' group) that have no
    /// row, as `offboard` does.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Allow up to N removals past the guard (10 % of the managed agents or 25).
    #[arg(long, value_name = "N", requires = "prune")]
    pub(crate) max_remove: Option<usize>,
    /// Remove without asking (required off a terminal when the plan removes agents).
    #[arg(long)]
    pub(crate) yes: bool,
    /// Report invalid rows and go on with the valid ones (else: exit 2, nothing written).
    #[arg(long)]
    pub(crate) skip_invalid: bool,
    /// Write one row per agent to FILE (.csv, or .json/.jsonl for JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Write a sign-in notice per created agent, and notices.csv, into DIR.
    #[arg(long, value_name = "DIR")]
    pub(crate) notices: Option<PathBuf>,
    /// Agents in flight at once (the per-API rate limits hold each quota).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// On a permanent failure: restore and remove what this agent's run changed and
    /// created, or keep it.
    #[arg(long, value_enum, default_value = "rollback")]
    pub(crate) on_failure: OnFailureArg,
}

#[derive(Args, Debug)]
pub(crate) struct SyncArgs {
    /// Print the plan (per agent: create, update with each change, unchanged, remove,
    /// conflict, skip) without writing anything; with --json, the saved plan.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Delete the Connect users of members who left every mapped group (still in the
    /// agents' group `identity_center.group`); their Identity Center users are never touched.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Allow up to N removals past the guard (10 % of the managed agents or 25).
    #[arg(long, value_name = "N", requires = "prune")]
    pub(crate) max_remove: Option<usize>,
    /// Remove without asking (required off a terminal when the plan removes agents).
    #[arg(long)]
    pub(crate) yes: bool,
    /// Write one row per agent to FILE (.csv, or .json/.jsonl for JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Agents in flight at once (the per-API rate limits hold each quota).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// On a permanent failure: restore what this agent's run changed and remove the
    /// Connect user it created, or keep it.
    #[arg(long, value_enum, default_value = "rollback")]
    pub(crate) on_failure: OnFailureArg,
    /// Run until stopped: a full reconcile now and every --interval, one line each (JSON
    /// Lines with --json). SIGINT/SIGTERM: the agents in flight finish and are
    /// checkpointed, then exit 0.
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) watch: bool,
    /// With --watch: the time between reconciles (`30s`, `15m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_interval, requires = "watch")]
    pub(crate) interval: std::time::Duration,
    /// With --watch: the SQS queue (its URL) that an EventBridge rule fills with Identity
    /// Center events; each event reconciles the users or groups it names, within seconds.
    #[arg(long, value_name = "URL", requires = "watch")]
    pub(crate) queue: Option<String>,
    /// With --watch: one watcher per state store leads; another waits as a standby and
    /// takes over within this long after the leader stops renewing its lease.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval, requires = "watch")]
    pub(crate) lease: std::time::Duration,
}

/// `30s`, `15m`, `1h`: a whole number and a unit, at least one second.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let rule = || {
        format!("invalid interval {s:?}: a whole number of seconds, minutes or hours such as 30s, 15m or 1h")
    };
    let unit = s.chars().last().ok_or_else(rule)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| rule())?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        _ => return Err(rule()),
    };
    if secs == 0 {
        return Err(rule());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Args, Debug)]
pub(crate) struct OffboardArgs {
    /// The agents' emails (Connect username on SAML, Identity Center UserName / email).
    #[arg(
        value_name = "EMAIL",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub(crate) emails: Vec<String>,
    /// A file of agents in any `batch` format (only the email / user login column is read).
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Print the plan (delete / gone per step) without writing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Delete without asking (required off a terminal).
    #[arg(long)]
    pub(crate) yes: bool,
    /// Keep the Identity Center user (its application assignment and membership still go).
    #[arg(long)]
    pub(crate) keep_identity_user: bool,
    /// Remove the Connect user alone (for an agent found in Connect only).
    #[arg(long, conflicts_with = "identity_only")]
    pub(crate) connect_only: bool,
    /// Remove the Identity Center side alone (for an agent found in Identity Center only).
    #[arg(long)]
    pub(crate) identity_only: bool,
    /// Write one row per agent to FILE (.csv, or .json/.jsonl for JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Agents in flight at once (the per-API rate limits hold each quota).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// Identify the agents from one listing of each directory (auto: from 20 agents).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) bulk_reads: BulkReadsArg,
}
