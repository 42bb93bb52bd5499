//! Workflow definitions: the TOML file format, parsed and validated against a registry of
//! actions into a [`Workflow`] of [`Step`]s.
//!
//! A step is either *reversible* (the default: look up, create what is missing, and a
//! rollback deletes what the run created) or **irreversible** (`irreversible = true`): its
//! action removes a resource ([`Action::removes`]), the engine looks it up, deletes it when
//! present and counts it done when absent, and never compensates it. The flag must be
//! written in the file for every removal action, so the workflow says what it destroys.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::action::{Action, Registry};
use super::ids::StepId;
use super::retry::RetryPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDef {
    id: String,
    action: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    #[serde(default)]
    settle_ms: Option<u64>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    irreversible: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowDef {
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    steps: Vec<StepDef>,
}

/// A step of a validated workflow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique id.
    pub id: String,
    /// Action name in the registry.
    pub action: String,
    /// Human description.
    pub description: Option<String>,
    /// Retry budget.
    pub retry: RetryPolicy,
    /// Eventual-consistency window after this step's latest write, during which "not found"
    /// on lookup or delete may just mean "not visible yet".
    pub settle_ms: u64,
    /// Input name → (step id, output name).
    pub inputs: BTreeMap<String, (String, String)>,
    /// A removal: deleted when found, done when absent, never compensated.
    pub irreversible: bool,
}

/// A validated workflow: steps in order, every reference resolved.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// The source text (snapshotted into each run).
    pub source: String,
}

/// A workflow file that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// TOML syntax or shape.
    #[error("workflow {origin}: {message}")]
    Parse {
        /// File or "built-in".
        origin: String,
        /// Parser message (names the key and line).
        message: String,
    },
    /// A semantic problem.
    #[error("workflow {origin}: {message}")]
    Invalid {
        /// File or "built-in".
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Workflow {
    /// Parses and validates a workflow against the registry: version 1, unique step ids,
    /// known actions, every required input bound to an output of an *earlier* step, no
    /// unknown inputs, sane retry policies.
    pub fn parse<S: Sync>(
        source: &str,
        origin: &str,
        registry: &Registry<S>,
    ) -> Result<Workflow, WorkflowError> {
        let def: WorkflowDef = toml::from_str(source).map_err(|e| WorkflowError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| WorkflowError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if def.version != 1 {
            return Err(invalid(format!(
                "version {} is not supported (expected 1)",
                def.version
            )));
        }
        if def.steps.is_empty() {
            return Err(invalid("has no steps".into()));
        }
        let mut steps: Vec<Step> = Vec::new();
        for s in &def.steps {
            let step = check_step(s, &steps, def.retry, registry).map_err(invalid)?;
            steps.push(step);
        }
        Ok(Workflow {
            name: def.name,
            description: def.description,
            steps,
            source: source.to_string(),
        })
    }

    /// Step ids in order.
    pub fn step_ids(&self) -> Vec<StepId> {
        self.steps.iter().map(|s| StepId::from(&s.id)).collect()
    }

    /// The ids of the irreversible steps (never compensated, never rolled back).
    pub fn irreversible_steps(&self) -> Vec<&str> {
        (self.steps.iter())
            .filter(|s| s.irreversible)
            .map(|s| s.id.as_str())
            .collect()
    }

    /// Whether a stored workflow's text declares irreversible steps, without its registry
    /// (to tell a run that removes agents from one that creates them). Text that does not
    /// parse declares none.
    pub fn declares_irreversible(source: &str) -> bool {
        toml::from_str::<WorkflowDef>(source).is_ok_and(|d| d.steps.iter().any(|s| s.irreversible))
    }
}

/// One step checked against the registry and the steps before it: its id, its action,
/// its inputs, its retry policy (the step's, else the workflow's, else the default).
fn check_step<S: Sync>(
    s: &StepDef,
    earlier: &[Step],
    workflow_retry: Option<RetryPolicy>,
    registry: &Registry<S>,
) -> Result<Step, String> {
    let id_re = regex::Regex::new("^[a-z][a-z0-9_]{0,63}$").expect("static regex");
    if !id_re.is_match(&s.id) {
        return Err(format!(
            "step id {:?} must match ^[a-z][a-z0-9_]{{0,63}}$",
            s.id
        ));
    }
    if earlier.iter().any(|p| p.id == s.id) {
        return Err(format!("duplicate step id {:?}", s.id));
    }
    let Some(action) = registry.get(&s.action) else {
        let known: Vec<&str> = registry.keys().map(String::as_str).collect();
        return Err(format!(
            "step {:?}: unknown action {:?} (known: {})",
            s.id,
            s.action,
            known.join(", ")
        ));
    };
    check_irreversible(s, &**action)?;
    let inputs = bind_inputs(s, &**action, earlier, registry)?;
    let retry = s.retry.or(workflow_retry).unwrap_or_default();
    if retry.max_attempts == 0
        || retry.multiplier < 1.0
        || retry.initial_backoff_ms > retry.max_backoff_ms
    {
        return Err(format!(
            "step {:?}: retry needs max_attempts >= 1, multiplier >= 1 and initial_backoff_ms <= max_backoff_ms",
            s.id
        ));
    }
    Ok(Step {
        id: s.id.clone(),
        action: s.action.clone(),
        description: s.description.clone(),
        retry,
        settle_ms: s.settle_ms.unwrap_or(0),
        inputs,
        irreversible: s.irreversible,
    })
}

/// A step's inputs, each bound to an output of an earlier step; every input the action
/// takes bound, and no other.
fn bind_inputs<S: Sync>(
    s: &StepDef,
    action: &dyn Action<S>,
    earlier: &[Step],
    registry: &Registry<S>,
) -> Result<BTreeMap<String, (String, String)>, String> {
    let mut inputs = BTreeMap::new();
    for (name, reference) in &s.inputs {
        if !action.inputs().contains(&name.as_str()) {
            return Err(format!(
                "step {:?}: action {} takes no input {:?} (it takes: {})",
                s.id,
                s.action,
                name,
                action.inputs().join(", ")
            ));
        }
        let Some((step_ref, output)) = reference.split_once('.') else {
            return Err(format!(
                "step {:?}: input {name} = {reference:?} must be \"<step>.<output>\"",
                s.id
            ));
        };
        let Some(src) = earlier.iter().find(|p| p.id == step_ref) else {
            return Err(format!(
                "step {:?}: input {name} refers to {step_ref:?}, which is not an earlier step",
                s.id
            ));
        };
        let src_action = &registry[&src.action];
        if !src_action.outputs().contains(&output) {
            return Err(format!(
                "step {:?}: input {name} refers to output {output:?} of {step_ref:?}, which produces only: {}",
                s.id,
                src_action.outputs().join(", ")
            ));
        }
        inputs.insert(name.clone(), (step_ref.to_string(), output.to_string()));
    }
    for needed in action.inputs() {
        if !inputs.contains_key(*needed) {
            return Err(format!(
                "step {:?}: action {} needs input {needed:?}, which is not bound",
                s.id, s.action
            ));
        }
    }
    Ok(inputs)
}

/// A removal action must be marked irreversible in the file, and only a removal may be.
fn check_irreversible<S: Sync>(s: &StepDef, action: &dyn Action<S>) -> Result<(), String> {
    match (s.irreversible, action.removes()) {
        (true, false) => Err(format!(
            "step {:?}: irreversible = true is only for removal actions; {} creates its resource, and a rollback undoes it",
            s.id, s.action
        )),
        (false, true) => Err(format!(
            "step {:?}: action {} deletes what it finds, which cannot be undone: mark the step irreversible = true",
            s.id, s.action
        )),
        _ => Ok(()),
    }
}
