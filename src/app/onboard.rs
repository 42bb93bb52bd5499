//! `onboard`: one agent, validated and resolved before any write, then its workflow in a
//! new run.

use std::sync::Arc;

use crate::agent::{self, AgentInput, FieldError};
use crate::config::Defaults;
use crate::engine::{
    AgentKey, AgentState, Engine, EngineOptions, PlannedStep, RunId, Secrets, Workflow,
};
use crate::preflight::{self, Catalog, Target};
use crate::steps::{self, Subject};
use crate::store::{self, MemoryJournal, RunRow};

use super::status::{run_status, RunStatus};
use super::{
    engine_options, env_for, Context, Error, NewRun, RunSettings, StateStore, WorkflowSource,
    PASSWORD_ENV,
};

/// What `onboard` did.
#[derive(Debug)]
pub enum OnboardReport {
    /// A dry run: the plan, nothing written.
    Plan {
        /// Agent email.
        agent: String,
        /// Steps.
        steps: Vec<PlannedStep>,
    },
    /// A real run.
    Run(RunStatus),
}

/// Onboards one agent: preflight, validation, then the workflow in a new run.
pub async fn onboard(
    ctx: &Context,
    input: AgentInput,
    secrets: Secrets,
    dry_run: bool,
    settings: &RunSettings,
) -> Result<OnboardReport, Error> {
    let config = ctx.config()?;
    let NewRun {
        clients,
        wf,
        target,
        catalog,
    } = ctx.new_run(WorkflowSource::Onboard).await?;
    let (subject, secrets) =
        validated_subject(input, secrets, &config.defaults, &target, &catalog)?;
    let registry = steps::registry(&env_for(&clients, &target));
    let email = subject.agent.email.clone();

    if dry_run {
        // A dry run writes nothing anywhere: its journal is in memory.
        let engine = Engine::new(
            wf,
            registry,
            Arc::new(MemoryJournal::default()),
            EngineOptions::default(),
        );
        let steps = engine.plan(&subject, &secrets).await;
        return Ok(OnboardReport::Plan {
            agent: email,
            steps,
        });
    }

    let store = ctx.open_store().await?;
    let run_id = create_run(&store, &wf, &target, &subject, settings).await?;
    let engine = Engine::new(wf, registry, store.clone(), engine_options(settings)?);
    engine.run_agent(&run_id, &email, &secrets).await?;
    Ok(OnboardReport::Run(
        run_status(&*store, &RunId::from(run_id)).await?,
    ))
}

/// The agent validated for the instance's identity mode and resolved against its
/// profiles, and the secrets with its password (from the input or a secret source),
/// required on a CONNECT_MANAGED instance.
fn validated_subject(
    mut input: AgentInput,
    mut secrets: Secrets,
    defaults: &Defaults,
    target: &Target,
    catalog: &Catalog,
) -> Result<(Subject, Secrets), Error> {
    // The password may arrive as a secret (environment, stdin): validate it like a field.
    if input.password.is_none() {
        input.password = secrets
            .get(steps::PASSWORD)
            .map(|p| agent::Secret::new(p.to_string()));
    }
    let spec =
        agent::validate(&input, defaults, target.identity_mode).map_err(|e| Error::Fields(e.0))?;
    let subject = preflight::resolve(spec, catalog).map_err(Error::Fields)?;
    if let Some(p) = &input.password {
        secrets.insert(steps::PASSWORD, p.expose().to_string());
    }
    if subject.agent.needs_password && secrets.get(steps::PASSWORD).is_none() {
        return Err(Error::Fields(vec![FieldError::redacted(
            "password",
            format!(
                "instance {} stores users in Amazon Connect (CONNECT_MANAGED): a password is required (set {PASSWORD_ENV} or use --password-stdin)",
                target.instance_id
            ),
        )]));
    }
    Ok((subject, secrets))
}

/// The new run with its one agent, unless the agent has a live onboarding (one that is
/// unfinished, or failed but still holds resources): that must be resumed, rolled back or
/// released first. The check and the insert are one transaction.
async fn create_run(
    store: &StateStore,
    wf: &Workflow,
    target: &Target,
    subject: &Subject,
    settings: &RunSettings,
) -> Result<String, Error> {
    let run_id = new_run_id();
    let run = RunRow {
        id: RunId::from(run_id.as_str()),
        created_at: store::now_rfc3339(),
        workflow_name: wf.name.clone(),
        workflow: wf.source.clone(),
        meta: serde_json::to_value(target).unwrap_or_default(),
    };
    let subject_json = serde_json::to_value(subject).map_err(|e| Error::Input(e.to_string()))?;
    let open: Vec<AgentState> = AgentState::ALL
        .into_iter()
        .filter(|s| s.unfinished())
        .collect();
    store
        .create_run_exclusive(
            &run,
            &[(AgentKey::from(subject.agent.email.clone()), subject_json)],
            &wf.step_ids(),
            settings.on_failure,
            &open,
            &[AgentState::Failed],
        )
        .await
        .map_err(|e| match e {
            store::Error::Unfinished { agent, run, state } => {
                let advice = AgentState::parse(&state)
                    .ok()
                    .and_then(|s| super::status::advice(s, &run, &agent))
                    .unwrap_or_else(|| format!("`connect-onboard status {run}`"));
                Error::Input(format!(
                    "{agent} already has an unfinished onboarding in run {run} (state {state}): {advice}"
                ))
            }
            e => Error::Store(e),
        })?;
    Ok(run_id)
}

pub(super) fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    format!("r-{}-{suffix}", now.format(&fmt).unwrap_or_default())
}
