//! The ids at the store boundary, one type each, so that a run id cannot be passed where an
//! agent key is expected: [`RunId`], [`AgentKey`] (an agent's normalised email), [`StepId`]
//! (a step of the workflow). Each is its string on the wire and in the state file
//! (`serde(transparent)`), and reads as a `&str` (`Deref`, `AsRef<str>`), so formatting
//! and comparisons are unchanged; making one from a string is explicit (`From`).
//!
//! The journal's writes take them, so the ids go where they belong:
//!
//! ```
//! # use connect_onboard::engine::{AgentKey, Journal, RunId};
//! async fn release(j: &dyn Journal, run: &RunId, agent: &AgentKey) {
//!     let _ = j.release_lease(run, agent, "token").await;
//! }
//! ```
//!
//! and a run id passed as the agent key does not compile:
//!
//! ```compile_fail
//! # use connect_onboard::engine::{AgentKey, Journal, RunId};
//! async fn release(j: &dyn Journal, run: &RunId, agent: &AgentKey) {
//!     let _ = j.release_lease(run, run, "token").await;
//! }
//! ```

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Default,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                $name(s.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id_type! {
    /// A run's id (`r-YYYYMMDD-HHMMSS-xxxxxx`).
    RunId
}

id_type! {
    /// An agent's key in a run: its normalised (trimmed, lower-cased) email.
    AgentKey
}

id_type! {
    /// A step's id, as the workflow names it.
    StepId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_strings_on_the_wire() {
        let run = RunId::from("r-20260101-000000-abcdef");
        let json = serde_json::to_string(&run).unwrap();
        assert_eq!(json, "\"r-20260101-000000-abcdef\"");
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), run);
        assert_eq!(run.to_string(), "r-20260101-000000-abcdef");
        assert_eq!(AgentKey::from("ana@example.com"), "ana@example.com");
    }
}
