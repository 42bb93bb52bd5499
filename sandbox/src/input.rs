//! Reading request members and paginating lists.
//!
//! [`Req`] wraps the parsed JSON body of one call with the service whose error
//! conventions apply (missing member → `InvalidParameterException` for Connect,
//! `ValidationException` for the awsJson services; wrong JSON type →
//! `SerializationException`). [`paginate`] implements the opaque, stable
//! next-token scheme shared by every list operation.

use serde_json::{Map, Value};

use crate::error::{ApiError, Service};

/// The members of one request.
pub struct Req<'a> {
    /// The answering service.
    pub service: Service,
    /// The JSON object (body members, plus nothing else).
    pub body: &'a Map<String, Value>,
}

impl<'a> Req<'a> {
    /// Wraps a body object.
    pub fn new(service: Service, body: &'a Map<String, Value>) -> Req<'a> {
        Req { service, body }
    }

    fn wrong_type(&self, key: &str, expected: &str) -> ApiError {
        self.service
            .serialization(format!("Member '{key}' must be {expected}"))
    }

    /// An optional string member.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        opt_str_in(self.service, self.body, key)
    }

    /// A required string member.
    pub fn str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.opt_str(key)?.ok_or_else(|| self.service.missing(key))
    }

    /// An optional integer member.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "an integer")),
        }
    }

    /// An optional object member.
    pub fn opt_obj(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.wrong_type(key, "an object")),
        }
    }

    /// A required object member.
    pub fn obj(&self, key: &str) -> Result<&'a Map<String, Value>, ApiError> {
        self.opt_obj(key)?.ok_or_else(|| self.service.missing(key))
    }

    /// An optional list member.
    pub fn opt_list(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.wrong_type(key, "a list")),
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<&'a str>>, ApiError> {
        let Some(list) = self.opt_list(key)? else {
            return Ok(None);
        };
        list.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "a list of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A required list of strings.
    pub fn str_list(&self, key: &str) -> Result<Vec<&'a str>, ApiError> {
        self.opt_str_list(key)?
            .ok_or_else(|| self.service.missing(key))
    }

    /// An optional boolean member.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "a boolean")),
        }
    }

    /// A nested request over an object member.
    pub fn sub(&self, obj: &'a Map<String, Value>) -> Req<'a> {
        Req::new(self.service, obj)
    }

    /// `MaxResults` within `1..=max` (default `default`).
    pub fn max_results(&self, key: &str, max: i64, default: usize) -> Result<usize, ApiError> {
        match self.opt_i64(key)? {
            None => Ok(default),
            Some(n) => check_max_results(self.service, key, n, max),
        }
    }
}

/// A string member of `obj`, with the service's type error.
pub fn opt_str_in<'a>(
    service: Service,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(service.serialization(format!("Member '{key}' must be a string"))),
    }
}

/// Checks a page size.
pub fn check_max_results(service: Service, key: &str, n: i64, max: i64) -> Result<usize, ApiError> {
    if (1..=max).contains(&n) {
        Ok(n as usize)
    } else {
        Err(service.validation(format!(
            "1 validation error detected: Value '{n}' at '{key}' failed to satisfy constraint: Member must have value between 1 and {max}"
        )))
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Pages through `items` (sorted by their unique key). The token is the hex of the
/// last key returned, so pages stay stable while items are added or removed.
pub fn paginate<T>(
    service: Service,
    mut items: Vec<(String, T)>,
    token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start_after =
        match token {
            None => None,
            Some(t) => Some(t.strip_prefix("sbx").and_then(hex_decode).ok_or_else(|| {
                service.validation(format!("The pagination token {t:?} is invalid"))
            })?),
        };
    let mut rest: Vec<(String, T)> = match &start_after {
        None => items,
        Some(after) => items.into_iter().filter(|(k, _)| k > after).collect(),
    };
    let more = rest.len() > max;
    rest.truncate(max);
    let next = if more {
        rest.last().map(|(k, _)| format!("sbx{}", hex_encode(k)))
    } else {
        None
    };
    Ok((rest.into_iter().map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_stable() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (p1, t1) = paginate(Service::Connect, items.clone(), None, 2).expect("p1");
        assert_eq!(p1, vec![0, 1]);
        let t1 = t1.expect("token");
        let (p2, t2) = paginate(Service::Connect, items.clone(), Some(&t1), 2).expect("p2");
        assert_eq!(p2, vec![2, 3]);
        let (p3, t3) = paginate(Service::Connect, items, t2.as_deref(), 2).expect("p3");
        assert_eq!((p3, t3), (vec![4], None));
        assert!(paginate::<u32>(Service::Connect, vec![], Some("garbage"), 2).is_err());
    }

    #[test]
    fn missing_member_errors() {
        let body = serde_json::json!({"A": 1});
        let obj = body.as_object().expect("object");
        let r = Req::new(Service::IdentityStore, obj);
        assert_eq!(
            r.str("B").map_err(|e| e.code),
            Err("ValidationException".into())
        );
        assert_eq!(
            r.str("A").map_err(|e| e.code),
            Err("SerializationException".into())
        );
        let c = Req::new(Service::Connect, obj);
        assert_eq!(
            c.str("B").map_err(|e| e.code),
            Err("InvalidParameterException".into())
        );
        assert!(c.max_results("MaxResults", 500, 100).is_ok());
    }
}
