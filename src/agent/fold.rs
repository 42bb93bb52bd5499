//! Names and emails compared without case: IAM Identity Center's user names and emails
//! are unique without case, and a Connect username may differ from the person's Identity
//! Center user only in case (the commonest sign-in failure). One fold, used wherever doctor,
//! drift, the bulk-read snapshot and offboarding match them.

/// The form names and emails are compared in without case.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Whether `a` and `b` are the same name without case.
pub fn same(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

/// Whether a user known by `user_name` and `emails` answers to `who` without case.
pub fn answers_to(user_name: &str, emails: &[String], who: &str) -> bool {
    let who = fold(who);
    fold(user_name) == who || emails.iter().any(|e| fold(e) == who)
}

/// Every folded name a user known by `user_name` and `emails` answers to, each once.
pub fn keys(user_name: &str, emails: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = emails.iter().map(|e| fold(e)).collect();
    keys.push(fold(user_name));
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_without_case_and_keys_are_folded_once() {
        assert!(same("Ben.Okafor@Example.com", "ben.okafor@example.com"));
        assert!(!same("ben@example.com", "ben@example.org"));
        let emails = vec!["Ana@Example.com".to_string(), "ana@example.com".to_string()];
        assert!(answers_to("ana.s", &emails, "ANA@example.COM"));
        assert!(answers_to("Ana.S", &[], "ana.s"));
        assert!(!answers_to("ana.s", &emails, "ana.silva@example.com"));
        assert_eq!(keys("Ana@example.com", &emails), vec!["ana@example.com"]);
    }
}
