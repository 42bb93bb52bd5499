//! The reader's tests: every format, every error, streaming and fuzzing.

use super::*;
use crate::agent::{PhoneType, Secret};
use std::io::Cursor;
use std::io::Read;

const PW: &str = "Sup3rS3cretPw!";

fn open(text: &str) -> Result<Reader, Vec<InputError>> {
    open_bytes(text.as_bytes().to_vec())
}

fn open_bytes(bytes: Vec<u8>) -> Result<Reader, Vec<InputError>> {
    Reader::from_reader("agents.csv", Cursor::new(bytes))
}

/// All rows and all row errors of a file whose header is fine.
fn read(text: &str) -> (Vec<Row>, Vec<InputError>) {
    read_bytes(text.as_bytes().to_vec())
}

fn read_bytes(bytes: Vec<u8>) -> (Vec<Row>, Vec<InputError>) {
    let reader = open_bytes(bytes).expect("header should be accepted");
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for r in reader {
        match r {
            Ok(row) => rows.push(row),
            Err(e) => errors.extend(e),
        }
    }
    (rows, errors)
}

fn one_row(text: &str) -> Row {
    let (rows, errors) = read(text);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rows.len(), 1);
    rows.into_iter().next().unwrap()
}

fn header_errors(text: &str) -> Vec<String> {
    match open(text) {
        Ok(r) => panic!("header accepted: {:?}", r.columns()),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn row_errors(text: &str) -> Vec<String> {
    read(text).1.iter().map(|e| e.to_string()).collect()
}

const FULL_CONSOLE_HEADER: &str = "first name,last name,email address,secondary email address,mobile,password,user login,agent hierarchy,routing profile name,security_profile_name_1|security_profile_name_2,user_hierarchy_1|user_hierarchy_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),tags";

const VOICEFOUNDRY_HEADER: &str = "first name,last name,email address,password,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),UserHierarchy";

const SAML_HEADER: &str = "first name,last name,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds)";

const SAML_NEW_HEADER: &str = "first name,last name,secondary email,mobile,user login,routing profile name,security_profile_name_1|security_profile_name_2,user_hierarchy_1|user_hierarchy_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),tags";

const NATIVE_HEADER: &str = "email,first_name,last_name,username,routing_profile,security_profiles,hierarchy_group,phone_type,desk_phone_number,auto_accept,acw_timeout,secondary_email,mobile,directory_user_id,tags,password";

// ---- console template --------------------------------------------------

#[test]
fn console_full_template_every_column() {
    let text = format!(
        "{FULL_CONSOLE_HEADER}\nRoe,Richard,rroe@example.com,r2@example.org,+12145550100,{PW},rroe,technical support/IT/Eastern,Basic Routing Profile,Admin|Agent,,desk,+12145550198,no,45,team|blue||site|dallas\n"
    );
    let reader = open(&text).unwrap();
    assert_eq!(reader.format(), Format::Console);
    assert_eq!(reader.header_line(), Some(1));
    assert_eq!(reader.columns().len(), 16);
    assert_eq!(reader.column_for("username"), Some("user login"));
    assert_eq!(reader.column_for("desk_phone_number"), Some("phone number"));
    assert_eq!(
        reader.column_for("hierarchy_group"),
        Some("agent hierarchy")
    );
    assert_eq!(reader.column_for("nonsense"), None);
    let row = one_row(&text);
    let a = &row.input;
    assert_eq!(row.line, 2);
    assert_eq!(a.first_name, "Roe");
    assert_eq!(a.last_name, "Richard");
    assert_eq!(a.email, "rroe@example.com");
    assert_eq!(a.secondary_email.as_deref(), Some("r2@example.org"));
    assert_eq!(a.mobile.as_deref(), Some("+12145550100"));
    assert_eq!(a.password.as_ref().map(Secret::expose), Some(PW));
    assert_eq!(a.username.as_deref(), Some("rroe"));
    assert_eq!(
        a.hierarchy_group.as_deref(),
        Some("technical support/IT/Eastern")
    );
    assert_eq!(a.routing_profile.as_deref(), Some("Basic Routing Profile"));
    assert_eq!(a.security_profiles, vec!["Admin", "Agent"]);
    assert_eq!(a.phone_type, Some(PhoneType::Desk));
    assert_eq!(a.desk_phone_number.as_deref(), Some("+12145550198"));
    assert_eq!(a.auto_accept, Some(false));
    assert_eq!(a.acw_timeout, Some(45));
    assert_eq!(
        a.tags,
        vec![
            ("team".to_string(), "blue".to_string()),
            ("site".into(), "dallas".into())
        ]
    );
    assert_eq!(a.directory_user_id, None);
    assert_eq!(row.column_for("email"), Some("email address"));
    assert_eq!(row.column_for("hierarchy_group"), Some("agent hierarchy"));
    assert_eq!(row.column_for("password"), Some("password"));
}

#[test]
fn console_documented_sample_rows() {
    let text = format!(
        "{VOICEFOUNDRY_HEADER}\n\
         Roe,Richard,rroe@example.com,F@keP@ssw0rd,rroe,Basic Routing Profile,CallCenterManager,SOFT_PHONE,,yes,30,technical support/IT/Eastern\n\
         Doe,Jane,jdoe@example.com,F@keP@ssw0rd2,jdoe,Basic Routing Profile,Agent,DESK_PHONE,+12145550198,no,0,technical support/IT/Australia\n"
    );
    let (rows, errors) = read(&text);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rows.len(), 2);
    let a = &rows[0].input;
    assert_eq!(
        (a.first_name.as_str(), a.last_name.as_str()),
        ("Roe", "Richard")
    );
    assert_eq!(a.email, "rroe@example.com");
    assert_eq!(a.password.as_ref().unwrap().expose(), "F@keP@ssw0rd");
    assert_eq!(a.username.as_deref(), Some("rroe"));
    assert_eq!(a.routing_profile.as_deref(), Some("Basic Routing Profile"));
    assert_eq!(a.security_profiles, vec!["CallCenterManager"]);
    assert_eq!(a.phone_type, Some(PhoneType::Soft));
    assert_eq!(a.desk_phone_number, None);
    assert_eq!(a.auto_accept, Some(true));
    assert_eq!(a.acw_timeout, Some(30));
    assert_eq!(
        a.hierarchy_group.as_deref(),
        Some("technical support/IT/Eastern")
    );
    assert_eq!(rows[0].column_for("hierarchy_group"), Some("UserHierarchy"));
    let b = &rows[1].input;
    assert_eq!(b.phone_type, Some(PhoneType::Desk));
    assert_eq!(b.desk_phone_number.as_deref(), Some("+12145550198"));
    assert_eq!(b.auto_accept, Some(false));
    assert_eq!(b.acw_timeout, Some(0));
    assert_eq!(
        b.hierarchy_group.as_deref(),
        Some("technical support/IT/Australia")
    );
    assert_eq!((rows[0].line, rows[1].line), (2, 3));
}

#[test]
fn console_connect_managed_generation_without_hierarchy() {
    let text = "first name,last name,email address,password,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds)\n\
                Roe,Richard,rroe@example.com,F@keP@ssw0rd,rroe,Basic Routing Profile,CallCenterManager,soft,,YES,30\n";
    let row = one_row(text);
    assert_eq!(row.input.auto_accept, Some(true));
    assert_eq!(row.input.phone_type, Some(PhoneType::Soft));
    assert_eq!(row.input.hierarchy_group, None);
    assert_eq!(row.input.tags, vec![]);
}

#[test]
fn console_saml_generation_email_is_user_login() {
    let text = format!(
        "{SAML_HEADER}\njdoe@example.com is not here,x,jdoe@example.com,Basic Routing Profile,Agent,soft,,True,10\n"
    );
    let reader = open(&text).unwrap();
    assert_eq!(reader.column_for("email"), Some("user login"));
    assert_eq!(reader.column_for("password"), None);
    let row = one_row(&text);
    assert_eq!(row.input.email, "jdoe@example.com");
    assert_eq!(row.input.username.as_deref(), Some("jdoe@example.com"));
    assert_eq!(row.input.auto_accept, Some(true));
    assert!(row.input.password.is_none());
    assert_eq!(row.column_for("email"), Some("user login"));
}

#[test]
fn console_newer_saml_generation_levels_and_tags() {
    let text = format!(
        "{SAML_NEW_HEADER}\nDoe,Jane,jane@corp.example,+15555550100,jane@corp.example,Basic Routing Profile,Admin|Agent,Planet|Continent|Country|State|City,soft,,no,0,key1|value1||key2|value2\n"
    );
    let row = one_row(&text);
    let a = &row.input;
    assert_eq!(a.secondary_email.as_deref(), Some("jane@corp.example"));
    assert_eq!(a.mobile.as_deref(), Some("+15555550100"));
    assert_eq!(a.email, "jane@corp.example");
    assert_eq!(a.security_profiles, vec!["Admin", "Agent"]);
    assert_eq!(
        a.hierarchy_group.as_deref(),
        Some("Planet/Continent/Country/State/City")
    );
    assert_eq!(
        a.tags,
        vec![
            ("key1".to_string(), "value1".to_string()),
            ("key2".into(), "value2".into())
        ]
    );
    assert_eq!(
        row.column_for("hierarchy_group"),
        Some("user_hierarchy_1|user_hierarchy_2")
    );
}

#[test]
fn console_email_fallback_rules() {
    let text = "first name,last name,email address,user login\n\
                A,B,,a@example.com\n\
                C,D,c@example.com,cuser\n\
                E,F,,euser\n";
    let (rows, errors) = read(text);
    assert!(errors.is_empty());
    assert_eq!(rows[0].input.email, "a@example.com");
    assert_eq!(rows[0].column_for("email"), Some("user login"));
    assert_eq!(rows[1].input.email, "c@example.com");
    assert_eq!(rows[1].input.username.as_deref(), Some("cuser"));
    assert_eq!(rows[1].column_for("email"), Some("email address"));
    // Not an email: left empty for validate() to report.
    assert_eq!(rows[2].input.email, "");
    assert_eq!(rows[2].input.username.as_deref(), Some("euser"));
    assert_eq!(rows[2].column_for("email"), Some("email address"));
}

#[test]
fn console_header_case_and_spaces_tolerated() {
    let text = "  FIRST   NAME ,Last Name,EMAIL\u{a0}ADDRESS, Phone Type ( Soft / Desk ) ,Secondary Email Address,acw TIMEOUT (seconds),userhierarchy\nA,B,a@x.example,DESK,,7,a / b\n";
    let reader = open(text).unwrap();
    assert_eq!(reader.format(), Format::Console);
    assert_eq!(reader.column_for("first_name"), Some("FIRST   NAME"));
    assert_eq!(
        reader.column_for("phone_type"),
        Some("Phone Type ( Soft / Desk )")
    );
    let row = one_row(text);
    assert_eq!(row.input.phone_type, Some(PhoneType::Desk));
    assert_eq!(row.input.acw_timeout, Some(7));
    assert_eq!(row.input.secondary_email, None);
    assert_eq!(row.input.hierarchy_group.as_deref(), Some("a/b"));
}

#[test]
fn console_both_hierarchy_columns() {
    let text =
        "first name,last name,email address,agent hierarchy,user_hierarchy_1|user_hierarchy_2\n\
                A,B,a@x.example,x/y,\n\
                C,D,c@x.example,,x|y\n\
                E,F,e@x.example,x/y,x|y\n\
                G,H,g@x.example,x/y,x|z\n";
    let (rows, errors) = read(text);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.input.hierarchy_group.as_deref(), Some("x/y"));
    }
    assert_eq!(
        rows[0].column_for("hierarchy_group"),
        Some("agent hierarchy")
    );
    assert_eq!(
        rows[1].column_for("hierarchy_group"),
        Some("user_hierarchy_1|user_hierarchy_2")
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "agents.csv:5: columns \"agent hierarchy\" and \"user_hierarchy_1|user_hierarchy_2\" disagree: \"x/y\" vs \"x/z\" (fill one of them)"
    );
}

// ---- Excel -------------------------------------------------------------

#[test]
fn bom_crlf_quoted_newlines_and_line_numbers() {
    let text = "\u{feff}first name,last name,email address,tags\r\n\
                \r\n\
                \"Roe, Jr.\",\"Rich\r\nard\",rroe@example.com,\r\n\
                ,,,\r\n\
                Doe,Jane,jdoe@example.com,\"a|1||b|\"\"q\"\"\"\r\n\
                Poe,\"E\nA\nP\",poe@example.com,\n\
                Zed,Zee,zed@example.com,";
    let reader = open(text).unwrap();
    assert_eq!(reader.column_for("first_name"), Some("first name"));
    let (rows, errors) = read(text);
    assert!(errors.is_empty(), "{errors:#?}");
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![3, 6, 7, 10]);
    assert_eq!(rows[0].input.first_name, "Roe, Jr.");
    assert_eq!(rows[0].input.last_name, "Rich\r\nard");
    assert_eq!(rows[0].input.tags, vec![]);
    assert_eq!(
        rows[1].input.tags[1],
        ("b".to_string(), "\"q\"".to_string())
    );
    assert_eq!(rows[2].input.last_name, "E\nA\nP");
    assert_eq!(rows[3].input.email, "zed@example.com");
}

#[test]
fn line_numbers_after_quoted_newline_in_errors() {
    let text = "first name,last name,email address,ACW timeout (seconds)\r\nA,\"x\r\ny\r\nz\",a@x.example,1\r\nB,C,b@x.example,ten\r\n";
    let errors = row_errors(text);
    assert_eq!(
        errors,
        vec!["agents.csv:5: column \"ACW timeout (seconds)\": value \"ten\" is not a whole number of seconds"]
    );
}

#[test]
fn crlf_password_last_column_keeps_no_cr() {
    let text = format!("first name,last name,email address,password\r\nA,B,a@x.example,{PW}\r\nC,D,c@x.example,\"{PW}\"\r\n");
    let (rows, errors) = read(&text);
    assert!(errors.is_empty());
    for r in rows {
        assert_eq!(r.input.password.unwrap().expose(), PW);
    }
}

#[test]
fn password_is_not_trimmed_but_blank_is_none() {
    let text =
        "first name,last name,email address,password\nA,B,a@x.example, pw \nC,D,c@x.example,   \n";
    let (rows, _) = read(text);
    assert_eq!(rows[0].input.password.as_ref().unwrap().expose(), " pw ");
    assert!(rows[1].input.password.is_none());
}

#[test]
fn trailing_empty_rows_and_blank_columns_are_ignored() {
    let text = "first name,last name,email address,,\r\nA,B,a@x.example,,\r\nC,D,c@x.example\r\n,,,,\r\n,,,,\r\n  ,\t,,,\r\n\r\n\r\n";
    let (rows, errors) = read(text);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].input.email, "c@x.example");
    let reader = open(text).unwrap();
    assert_eq!(reader.columns().len(), 3);
}

#[test]
fn value_under_blank_header_is_an_error() {
    let errors = row_errors("first name,last name,email address,\nA,B,a@x.example,oops\n");
    assert_eq!(
        errors,
        vec!["agents.csv:2: column 4 has no header but this row has a value in it"]
    );
}

#[test]
fn header_only_yields_zero_rows() {
    for text in [
        "first name,last name,email address",
        "first name,last name,email address\r\n",
        "\u{feff}first name,last name,email address\r\n,,\r\n\r\n",
    ] {
        let (rows, errors) = read(text);
        assert!(rows.is_empty() && errors.is_empty(), "{text:?}");
    }
}

#[test]
fn excel_scientific_notation_phone_is_reported() {
    let errors = row_errors(
        "first name,last name,email address,phone number\nA,B,a@x.example,1.21456E+10\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("agents.csv:2: column \"phone number\": value \"1.21456E+10\" looks like a number Excel reformatted"), "{errors:?}");
    assert!(!looks_like_excel_number("+12145550198"));
    assert!(!looks_like_excel_number("E+10"));
    assert!(looks_like_excel_number("1E10"));
}

// ---- file-level errors ------------------------------------------------

#[test]
fn empty_file() {
    for bytes in [&b""[..], b"\r\n\n  \n", b"\xEF\xBB\xBF", b",,,\r\n,,\r\n"] {
        let err = open_bytes(bytes.to_vec()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].to_string(),
            "agents.csv: the file is empty",
            "{bytes:?}"
        );
        assert_eq!(err[0].line, 0);
    }
}

#[test]
fn cannot_open_missing_file() {
    let err = Reader::open("/nonexistent/dir/agents.csv").unwrap_err();
    assert_eq!(err[0].line, 0);
    assert!(err[0]
        .to_string()
        .starts_with("/nonexistent/dir/agents.csv: cannot open the file: "));
}

#[test]
fn unknown_column_is_named_with_the_accepted_list() {
    let errors = header_errors("first name,last name,email address,Routing Profile,department\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("agents.csv:1: unknown column \"Routing Profile\" (column 4); accepted columns: \"first name\", \"last name\", \"email address\""), "{}", errors[0]);
    assert!(errors[0].contains("\"routing profile name\""));
    assert!(!errors[0].contains("did you mean"));
    assert!(errors[1].starts_with("agents.csv:1: unknown column \"department\" (column 5)"));
    let native = header_errors("email,first_name,last_name,department\n");
    assert_eq!(native.len(), 1);
    assert!(
        native[0].contains(
            "unknown column \"department\" (column 4); accepted columns: \"email\", \"first_name\""
        ),
        "{}",
        native[0]
    );
    let e = open("first name,last name,email address,x\n").unwrap_err();
    assert_eq!(e[0].column.as_deref(), Some("x"));
}

#[test]
fn mixed_dialect_header_is_not_guessed() {
    let errors = header_errors("first name,last name,email\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("unknown column \"email\""));
    assert_eq!(
        errors[1],
        "agents.csv:1: the header needs an \"email address\" or a \"user login\" column"
    );
}

#[test]
fn duplicate_columns() {
    let errors = header_errors("first name,last name,email address,First Name\n");
    assert_eq!(
        errors,
        vec!["agents.csv:1: column \"First Name\" appears twice (columns 1 and 4)"]
    );
    let errors = header_errors("first name,last name,email address,agent hierarchy,UserHierarchy,secondary email,secondary email address\n");
    assert_eq!(
        errors,
        vec![
            "agents.csv:1: column \"UserHierarchy\" duplicates column \"agent hierarchy\" (columns 4 and 5)",
            "agents.csv:1: column \"secondary email address\" duplicates column \"secondary email\" (columns 6 and 7)",
        ]
    );
}

#[test]
fn required_columns_missing() {
    assert_eq!(
        header_errors("first name,email address\n"),
        vec!["agents.csv:1: the required column \"last name\" is missing"]
    );
    assert_eq!(
        header_errors("last name,first name,password\n"),
        vec!["agents.csv:1: the header needs an \"email address\" or a \"user login\" column"]
    );
    assert_eq!(
        header_errors("first_name,last_name,username\n"),
        vec!["agents.csv:1: the required column \"email\" is missing"]
    );
    assert_eq!(
        header_errors("email address,user login\n"),
        vec![
            "agents.csv:1: the required column \"first name\" is missing",
            "agents.csv:1: the required column \"last name\" is missing",
        ]
    );
}

#[test]
fn wrong_delimiter() {
    assert_eq!(
        header_errors("first name;last name;email address\nA;B;a@x.example\n"),
        vec!["agents.csv:1: the file is not comma-separated: the header has one column containing ';'"]
    );
    assert_eq!(
        header_errors("first name\tlast name\temail address\n"),
        vec!["agents.csv:1: the file is not comma-separated: the header has one column containing a tab"]
    );
}

#[test]
fn first_row_not_a_header_echoes_nothing() {
    let text = format!("Roe,Richard,rroe@example.com,{PW},rroe\n");
    let errors = header_errors(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("agents.csv:1: the first row is not a header"));
    assert!(!errors[0].contains(PW) && !errors[0].contains("rroe"));
}

#[test]
fn header_line_after_leading_blank_lines() {
    let text = "\n\n,,\nfirst name,last name,email address\nA,B,\"Cx\"\n";
    let reader = open(text).unwrap();
    assert_eq!(reader.header_line(), Some(4));
    let errors = header_errors("\r\n\r\nfirst name,last name\r\n");
    assert_eq!(
        errors[0],
        "agents.csv:3: the header needs an \"email address\" or a \"user login\" column"
    );
}

#[test]
fn encoding_problems() {
    // UTF-16 (Excel "Unicode Text").
    let mut utf16 = vec![0xFF, 0xFE];
    for u in "first name".encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let e = open_bytes(utf16).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "agents.csv:1: the file is UTF-16 encoded; save it as \"CSV UTF-8 (Comma delimited)\""
    );
    // Header not UTF-8 (Windows-1252 "é").
    let e = open_bytes(b"first name,last name,email address,r\xe9gion\n".to_vec()).unwrap_err();
    assert_eq!(e[0].to_string(), "agents.csv:1: the header is not valid UTF-8; save the file as \"CSV UTF-8 (Comma delimited)\"");
    // NUL bytes: UTF-16 without BOM.
    let e = open_bytes(b"f\0i\0r\0s\0t\0".to_vec()).unwrap_err();
    assert!(e[0].message.contains("NUL bytes"));
    // Old Mac line endings.
    let e = open("first name,last name,email address\rA,B,a@x.example\r").unwrap_err();
    assert!(e[0].message.contains("old Mac line endings"), "{e:?}");
}

#[test]
fn invalid_utf8_cell_names_line_and_column() {
    let mut bytes =
        b"first name,last name,email address\nA,B,a@x.example\nJos\xe9,B,j@x.example\n".to_vec();
    bytes.extend_from_slice(b"C,D,c@x.example\n");
    let (rows, errors) = read_bytes(bytes);
    assert_eq!(rows.len(), 2);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "agents.csv:3: column \"first name\": value \"Jos\u{fffd}\" is not valid UTF-8 (bad byte at offset 3); save the file as \"CSV UTF-8 (Comma delimited)\""
    );
    assert_eq!(errors[0].column.as_deref(), Some("first name"));
}

#[test]
fn repeated_header_mid_file() {
    let text = "first name,last name,email address\nA,B,a@x.example\nFirst Name , last name,EMAIL ADDRESS\nC,D,c@x.example\n";
    let (rows, errors) = read(text);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec!["agents.csv:3: the header is repeated (files pasted together?)"]
    );
}

#[test]
fn row_with_more_cells_than_header() {
    let text = format!("first name,last name,email address,password\nRoe, Jr.,Richard,rroe@example.com,{PW}\nA,B,a@x.example,,,\n");
    let (rows, errors) = read(&text);
    assert_eq!(rows.len(), 1, "empty extra cells are fine");
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec!["agents.csv:2: the row has 5 cells but the header has 4 columns (a value containing a comma must be in double quotes)"]
    );
}

#[test]
fn huge_cell_is_reported_short_and_reading_goes_on() {
    let mut text = String::from("first name,last name,email address\n");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    text.push_str(",B,a@x.example\nC,D,c@x.example\n");
    let (rows, errors) = read(&text);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].line, 3);
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(msg.len() < 200, "{msg}");
    assert_eq!(
        msg,
        format!(
            "agents.csv:2: column \"first name\": value \"{}\"… (10485760 bytes) is larger than 64 KiB",
            "x".repeat(60)
        )
    );
}

#[test]
fn cell_of_exactly_64_kib_is_accepted() {
    let text = format!(
        "first name,last name,email address\n{},B,a@x.example\n",
        "y".repeat(MAX_CELL_BYTES)
    );
    assert_eq!(one_row(&text).input.first_name.len(), MAX_CELL_BYTES);
}

/// Endless bytes after an unclosed quote: one record would hold the whole file.
struct Endless(u64);
impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0 as usize);
        buf[..n].fill(b'z');
        self.0 -= n as u64;
        Ok(n)
    }
}

#[test]
fn unclosed_quote_stops_at_record_limit() {
    let head = Cursor::new(b"first name,last name,email address\nA,B,a@x.example\nC,\"D,".to_vec());
    let reader = Reader::from_reader(
        "agents.csv",
        head.chain(Endless(MAX_RECORD_BYTES + 1024 * 1024)),
    )
    .unwrap();
    let results: Vec<_> = reader.collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "agents.csv:3: the record starting here is larger than 16 MiB (a double quote is probably not closed); reading stopped"
    );
}

#[test]
fn unclosed_quote_is_reported_at_its_record() {
    let text = "first name,last name,email address\r\nA,B,a@x.example\r\nC,\"D,c@x.example\r\nE,F,e@x.example\r\n";
    let results: Vec<_> = open(text).unwrap().collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().unwrap().line, 2);
    assert_eq!(
        results[1].as_ref().unwrap_err()[0].to_string(),
        "agents.csv:3: a double quote opened in this record is never closed (the rest of the file was read as one cell); reading stopped"
    );
    // In the header, and a quoted cell that legitimately ends the file.
    let e = open("first name,\"last name,email address\n").unwrap_err();
    assert!(e[0]
        .to_string()
        .starts_with("agents.csv:1: a double quote opened"));
    let (rows, errors) = read("first name,last name,email address\nA,B,\"a@x.example\n\"");
    assert!(errors.is_empty());
    assert_eq!(rows[0].input.email, "a@x.example");
}

// ---- cell syntax errors -------------------------------------------------

#[test]
fn cell_rule_messages() {
    let head = "first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds),phone type (soft/desk)";
    let cases = [
        ("A,B,a@x.example,maybe,,", "column \"soft phone auto accept (yes/no)\": value \"maybe\" is not yes or no"),
        ("A,B,a@x.example,,30s,", "column \"ACW timeout (seconds)\": value \"30s\" is not a whole number of seconds"),
        ("A,B,a@x.example,,1.5,", "column \"ACW timeout (seconds)\": value \"1.5\" is not a whole number of seconds"),
        ("A,B,a@x.example,,,mobile", "column \"phone type (soft/desk)\": value \"mobile\" is not soft or desk (or SOFT_PHONE / DESK_PHONE)"),
    ];
    for (row, expected) in cases {
        let errors = row_errors(&format!("{head}\n{row}\n"));
        assert_eq!(errors, vec![format!("agents.csv:2: {expected}")]);
    }
    // The example of the brief, at line 7.
    let text = format!(
        "{head}\n{}A,B,a@x.example,maybe,,\n",
        "A,B,a@x.example,yes,,\n".repeat(5)
    );
    assert_eq!(
        row_errors(&text),
        vec!["agents.csv:7: column \"soft phone auto accept (yes/no)\": value \"maybe\" is not yes or no"]
    );
}

#[test]
fn all_errors_of_a_row_at_once() {
    let text = "first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds),phone type (soft/desk),tags\nA,B,a@x.example,maybe,x,cell,k\n";
    let mut reader = open(text).unwrap();
    let errs = reader.next().unwrap().unwrap_err();
    let cols: Vec<_> = errs.iter().map(|e| e.column.as_deref().unwrap()).collect();
    assert_eq!(
        cols,
        vec![
            "soft phone auto accept (yes/no)",
            "ACW timeout (seconds)",
            "phone type (soft/desk)",
            "tags"
        ]
    );
    assert!(reader.next().is_none());
}

#[test]
fn tag_and_hierarchy_syntax_errors() {
    let head =
        "first name,last name,email address,tags,agent hierarchy,user_hierarchy_1|user_hierarchy_2";
    let cases = [
        ("k1|v1||k2", "column \"tags\": value \"k1|v1||k2\" has a tag \"k2\" without a value (write key|value pairs separated by ||)"),
        ("k1|v1|x", "column \"tags\": value \"k1|v1|x\" has a tag \"k1|v1|x\" with more than one '|' (write key|value pairs separated by ||)"),
        ("k|1||k|2", "column \"tags\": value \"k|1||k|2\" has the tag key \"k\" twice"),
        ("|v", "column \"tags\": value \"|v\" has a tag with an empty key"),
    ];
    for (tags, expected) in cases {
        let errors = row_errors(&format!("{head}\nA,B,a@x.example,{tags},,\n"));
        assert_eq!(errors, vec![format!("agents.csv:2: {expected}")]);
    }
    assert_eq!(
        row_errors(&format!("{head}\nA,B,a@x.example,,a//b,\n")),
        vec!["agents.csv:2: column \"agent hierarchy\": value \"a//b\" has an empty hierarchy level (levels are separated by '/')"]
    );
    assert_eq!(
        row_errors(&format!("{head}\nA,B,a@x.example,,,a||b\n")),
        vec!["agents.csv:2: column \"user_hierarchy_1|user_hierarchy_2\": value \"a||b\" has an empty hierarchy level (levels are separated by '|')"]
    );
    assert_eq!(
        row_errors(&format!("{head}\nA,B,a@x.example,,,a|b/c\n")),
        vec!["agents.csv:2: column \"user_hierarchy_1|user_hierarchy_2\": value \"a|b/c\" has a level containing '/' (\"b/c\"), which cannot be expressed as a level path"]
    );
    // Empty tag value and surrounding blanks are fine.
    let row = one_row(&format!("{head}\nA,B,a@x.example, k | || j|v ||,,\n"));
    assert_eq!(
        row.input.tags,
        vec![("k".to_string(), String::new()), ("j".into(), "v".into())]
    );
}

#[test]
fn thirty_bad_rows_are_all_reported() {
    let mut text = String::from("first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds)\n");
    for i in 0..30 {
        text.push_str(&format!("A{i},B,a{i}@x.example,maybe{i},{i}x\n"));
        text.push_str(&format!("G{i},B,g{i}@x.example,yes,{i}\n"));
    }
    let (rows, errors) = read(&text);
    assert_eq!(rows.len(), 30);
    assert_eq!(errors.len(), 60);
    for (i, pair) in errors.chunks(2).enumerate() {
        let line = 2 + 2 * i as u64;
        assert_eq!(pair[0].line, line);
        assert_eq!(pair[1].line, line);
        assert_eq!(
            pair[0].column.as_deref(),
            Some("soft phone auto accept (yes/no)")
        );
        assert_eq!(pair[1].column.as_deref(), Some("ACW timeout (seconds)"));
        assert!(pair[0].message.contains(&format!("\"maybe{i}\"")));
    }
}

#[test]
fn long_values_are_truncated_in_errors() {
    let long = "m".repeat(1000);
    let errors = row_errors(&format!("first name,last name,email address,soft phone auto accept (yes/no)\nA,B,a@x.example,{long}\n"));
    assert_eq!(
        errors[0],
        format!("agents.csv:2: column \"soft phone auto accept (yes/no)\": value \"{}\"… (1000 bytes) is not yes or no", "m".repeat(60))
    );
    assert_eq!(quote("héllo"), "\"héllo\"");
    assert_eq!(
        quote(&"é".repeat(61)),
        format!("\"{}\"… (122 bytes)", "é".repeat(60))
    );
    assert_eq!(
        quote_bytes(&[0xFFu8; 1000]),
        format!("\"{}\"… (1000 bytes)", "\u{fffd}".repeat(60))
    );
}

// ---- passwords ---------------------------------------------------------

#[test]
fn password_never_in_error_text() {
    let mut all = Vec::new();
    let mut collect = |bytes: Vec<u8>| match open_bytes(bytes) {
        Err(e) => all.extend(e),
        Ok(r) => {
            for row in r {
                match row {
                    Err(e) => all.extend(e),
                    Ok(row) => assert!(!format!("{row:?}").contains(PW)),
                }
            }
        }
    };
    let head = "first name,last name,email address,password,soft phone auto accept (yes/no)";
    collect(format!("{head}\nA,B,a@x.example,{PW},maybe\n").into_bytes());
    // Invalid UTF-8 inside the password.
    collect(
        format!("{head}\nA,B,a@x.example,{PW}\u{0}\n")
            .into_bytes()
            .into_iter()
            .map(|b| if b == 0 { 0xFF } else { b })
            .collect(),
    );
    // Oversized password cell.
    collect(
        format!(
            "{head}\nA,B,a@x.example,{PW}{},no\n",
            "p".repeat(MAX_CELL_BYTES)
        )
        .into_bytes(),
    );
    // Shifted by an unquoted comma.
    collect(format!("{head}\nRoe, Jr.,B,a@x.example,{PW},no\n").into_bytes());
    // Repeated header and a header-less file.
    collect(format!("{head}\n{head}\n").into_bytes());
    collect(format!("A,B,a@x.example,{PW},no\n").into_bytes());
    // JSON Lines: wrong type, oversized, neighbour errors, broken JSON.
    collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\",\"password\":[\"{PW}\"]}}\n").into_bytes());
    collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\",\"password\":\"{PW}{}\"}}\n", "p".repeat(MAX_CELL_BYTES)).into_bytes());
    collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"password\":\"{PW}\",\"auto_accept\":\"maybe\",\"extra\":1}}\n").into_bytes());
    collect(format!("{{\"email\":\"a@x.example\",\"password\":\"{PW}\" \"x\"}}\n").into_bytes());
    assert!(all.len() >= 12, "{all:#?}");
    let redacted = all
        .iter()
        .filter(|e| e.message.contains("value <redacted>"))
        .count();
    assert_eq!(redacted, 4, "{all:#?}");
    for e in &all {
        assert!(!e.to_string().contains("S3cret"), "{e}");
        assert!(!format!("{e:?}").contains("S3cret"), "{e:?}");
    }
}

// ---- native CSV ----------------------------------------------------------

#[test]
fn native_csv_every_column() {
    let text = format!(
        "{NATIVE_HEADER}\njdoe@example.com,Jane,Doe,jdoe,Basic Routing Profile,Agent|Supervisor,Sales/EMEA,desk,+442071838750,TRUE,120,j2@example.com,+447700900123,d-123,team=blue|cost=cc=1,{PW}\nx@example.com,X,Y,,,,,,,,,,,,,\n"
    );
    let reader = open(&text).unwrap();
    assert_eq!(reader.format(), Format::Native);
    assert_eq!(
        reader.column_for("desk_phone_number"),
        Some("desk_phone_number")
    );
    let (rows, errors) = read(&text);
    assert!(errors.is_empty(), "{errors:#?}");
    let a = &rows[0].input;
    assert_eq!(a.email, "jdoe@example.com");
    assert_eq!(a.username.as_deref(), Some("jdoe"));
    assert_eq!(a.security_profiles, vec!["Agent", "Supervisor"]);
    assert_eq!(a.hierarchy_group.as_deref(), Some("Sales/EMEA"));
    assert_eq!(a.phone_type, Some(PhoneType::Desk));
    assert_eq!(a.desk_phone_number.as_deref(), Some("+442071838750"));
    assert_eq!(a.auto_accept, Some(true));
    assert_eq!(a.acw_timeout, Some(120));
    assert_eq!(a.secondary_email.as_deref(), Some("j2@example.com"));
    assert_eq!(a.mobile.as_deref(), Some("+447700900123"));
    assert_eq!(a.directory_user_id.as_deref(), Some("d-123"));
    assert_eq!(
        a.tags,
        vec![
            ("team".to_string(), "blue".to_string()),
            ("cost".into(), "cc=1".into())
        ]
    );
    assert_eq!(a.password.as_ref().unwrap().expose(), PW);
    let b = &rows[1].input;
    assert_eq!(b.username, None);
    assert!(b.security_profiles.is_empty() && b.tags.is_empty());
    assert_eq!(
        (b.auto_accept, b.acw_timeout, b.phone_type),
        (None, None, None)
    );
    assert!(b.password.is_none());
}

#[test]
fn native_csv_errors() {
    let text = "first_name,last_name,email,tags,auto_accept\nA,B,a@x.example,team,maybe\n";
    assert_eq!(
        row_errors(text),
        vec![
            "agents.csv:2: column \"tags\": value \"team\" has a tag \"team\" without '=' (write key=value pairs separated by |)",
            "agents.csv:2: column \"auto_accept\": value \"maybe\" is not yes or no",
        ]
    );
    // Native hierarchy_group is passed through unchanged (a name may hold '|').
    let row = one_row("first_name,last_name,email,hierarchy_group\nA,B,a@x.example,hg-1234\n");
    assert_eq!(row.input.hierarchy_group.as_deref(), Some("hg-1234"));
}

#[test]
fn a_row_with_cell_errors_keeps_its_other_cells_for_validation() {
    let text = "email,first_name,last_name,auto_accept,acw_timeout\na@x.example,A,B,maybe,-5\nb@x.example,B,C,yes,7\n";
    let mut r = open(text).unwrap();
    assert!(r.next().unwrap().is_err());
    let partial = r.take_partial().expect("the rest of the row");
    assert_eq!(partial.line, 2);
    assert_eq!(partial.input.email, "a@x.example");
    assert_eq!(
        partial.input.auto_accept, None,
        "the failed cell is left unset"
    );
    assert_eq!(
        partial.input.acw_timeout,
        Some(-5),
        "judged by the rules later"
    );
    assert!(r.take_partial().is_none(), "taken once");
    assert!(r.next().unwrap().is_ok());
    assert!(r.take_partial().is_none(), "only after an error");
    // Shifted cells are not a row: nothing to validate.
    let mut r = open("email,first_name,last_name\na@x.example,A,B,extra\n").unwrap();
    assert!(r.next().unwrap().is_err());
    assert!(r.take_partial().is_none());
}

// ---- JSON Lines ----------------------------------------------------------

#[test]
fn jsonl_rows() {
    let text = format!(
        "\u{feff}\n{{\"email\":\"jdoe@example.com\",\"first_name\":\"Jane\",\"last_name\":\"Doe\",\"username\":\"jdoe\",\"routing_profile\":\"Basic\",\"security_profiles\":[\"Agent\",\"Admin\"],\"hierarchy_group\":\"a/b\",\"phone_type\":\"SOFT_PHONE\",\"desk_phone_number\":null,\"auto_accept\":true,\"acw_timeout\":30,\"secondary_email\":\"j2@example.com\",\"mobile\":\"+15555550100\",\"directory_user_id\":\"d-1\",\"tags\":{{\"team\":\"blue\"}},\"password\":\"{PW}\"}}\r\n   \r\n{{\"email\":\"x@example.com\",\"first_name\":\"X\",\"last_name\":\"Y\"}}"
    );
    let reader = open(&text).unwrap();
    assert_eq!(reader.format(), Format::JsonLines);
    assert_eq!(reader.column_for("tags"), Some("tags"));
    assert_eq!(reader.header_line(), None);
    let (rows, errors) = read(&text);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4]);
    let a = &rows[0].input;
    assert_eq!(a.email, "jdoe@example.com");
    assert_eq!(a.security_profiles, vec!["Agent", "Admin"]);
    assert_eq!(a.phone_type, Some(PhoneType::Soft));
    assert_eq!(a.desk_phone_number, None);
    assert_eq!(a.auto_accept, Some(true));
    assert_eq!(a.acw_timeout, Some(30));
    assert_eq!(a.tags, vec![("team".to_string(), "blue".to_string())]);
    assert_eq!(a.password.as_ref().unwrap().expose(), PW);
    assert_eq!(rows[0].column_for("acw_timeout"), Some("acw_timeout"));
    assert_eq!(rows[1].input.username, None);
}

#[test]
fn jsonl_errors() {
    let ok = "\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"";
    let text = format!(
        "{{{ok}}}\n\
         {{{ok},\"auto_accept\":\"yes\",\"acw_timeout\":1.5,\"phone_type\":\"x\",\"security_profiles\":\"Agent\",\"tags\":{{\"k\":1}},\"mobile\":5}}\n\
         {{\"first_name\":\"A\",\"last_name\":null,\"Email\":\"a@x.example\"}}\n\
         [1,2]\n\
         {{{ok},}}\n\
         {{{ok}}}\n"
    );
    let (rows, errors) = read(&text);
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 6]);
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "agents.csv:2: key \"acw_timeout\": value \"1.5\" is not a whole number of seconds",
            "agents.csv:2: key \"auto_accept\": value \"yes\" is not true or false",
            "agents.csv:2: key \"mobile\": value \"5\" is not a string",
            "agents.csv:2: key \"phone_type\": value \"x\" is not soft or desk (or SOFT_PHONE / DESK_PHONE)",
            "agents.csv:2: key \"security_profiles\": value \"Agent\" is not an array of strings",
            "agents.csv:2: key \"tags\": value \"{\\\"k\\\":1}\" is not an object whose values are strings",
            "agents.csv:3: the required key \"email\" is missing",
            "agents.csv:3: unknown key \"Email\"; accepted keys: email, first_name, last_name, username, routing_profile, security_profiles, hierarchy_group, phone_type, desk_phone_number, auto_accept, acw_timeout, secondary_email, mobile, directory_user_id, tags, password",
            "agents.csv:3: key \"last_name\": value \"null\" is not a string",
            "agents.csv:4: the line is not a JSON object",
            "agents.csv:5: invalid JSON at character 57: trailing comma",
        ]
    );
}

#[test]
fn jsonl_long_line_and_bad_utf8_are_skipped() {
    let ok = "{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"}";
    let mut bytes = format!(
        "{ok}\n{{\"email\":\"{}\"}}\n",
        "e".repeat(MAX_JSON_LINE_BYTES)
    )
    .into_bytes();
    bytes.extend_from_slice(b"{\"email\":\"\xff\"}\n");
    bytes.extend_from_slice(
        format!(
            "{{\"email\":\"a@x.example\",\"first_name\":\"{}\",\"last_name\":\"B\"}}\n",
            "n".repeat(MAX_CELL_BYTES + 1)
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(ok.as_bytes());
    let (rows, errors) = read_bytes(bytes);
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 5]);
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(got[0], "agents.csv:2: the line is longer than 2 MiB");
    assert_eq!(
        got[1],
        "agents.csv:3: the line is not valid UTF-8 (bad byte at offset 10)"
    );
    assert!(
        got[2].starts_with("agents.csv:4: key \"first_name\": value \"nnnn"),
        "{}",
        got[2]
    );
    assert!(
        got[2].ends_with("… (65537 bytes) is larger than 64 KiB"),
        "{}",
        got[2]
    );
    assert_eq!(got.len(), 3);
}

#[test]
fn jsonl_by_extension_and_csv_by_content() {
    let dir = std::env::temp_dir().join(format!("reader-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // .ndjson whose first line is blank-then-object; .csv starting with '{' is still JSONL.
    let nd = dir.join("agents.NDJSON");
    std::fs::write(
        &nd,
        "\n{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"}\n",
    )
    .unwrap();
    let r = Reader::open(&nd).unwrap();
    assert_eq!(r.format(), Format::JsonLines);
    assert_eq!(r.file_name(), nd.display().to_string());
    let rows: Vec<_> = r.collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].as_ref().unwrap().line, 2);
    // A .jsonl file that is not JSON: reported as JSON errors, not CSV.
    let jl = dir.join("agents.jsonl");
    std::fs::write(&jl, "first name,last name\n").unwrap();
    let errs: Vec<_> = Reader::open(&jl).unwrap().collect();
    assert!(errs[0].as_ref().unwrap_err()[0]
        .message
        .starts_with("invalid JSON"));
    let csv = dir.join("agents.csv");
    std::fs::write(&csv, "first_name,last_name,email\nA,B,a@x.example\n").unwrap();
    let r = Reader::open(&csv).unwrap();
    assert_eq!(r.format(), Format::Native);
    assert_eq!(r.count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- robustness ----------------------------------------------------------

/// Generates a console file row by row, never holding it in memory.
struct Generated {
    next: u64,
    total: u64,
    pending: Vec<u8>,
}
impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            if self.next > self.total {
                return Ok(0);
            }
            self.pending = if self.next == 0 {
                format!("{VOICEFOUNDRY_HEADER}\r\n").into_bytes()
            } else {
                let i = self.next;
                format!("Last{i},First{i},u{i}@example.com,Pw{i}Pw{i}Pw,u{i},Basic Routing Profile,Agent|Admin,soft,,yes,{},\"Sales/Region, {i}\"\r\n", i % 100).into_bytes()
            };
            self.next += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn streams_100k_rows() {
    let total = 100_000;
    let reader = Reader::from_reader(
        "big.csv",
        Generated {
            next: 0,
            total,
            pending: Vec::new(),
        },
    )
    .unwrap();
    let mut count = 0u64;
    let mut last_line = 0;
    for row in reader {
        let row = row.expect("every generated row is valid");
        count += 1;
        last_line = row.line;
    }
    assert_eq!(count, total);
    assert_eq!(last_line, total + 1);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        drain(bytes);
    }

    #[test]
    fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), which in 0usize..4) {
        let head: &[u8] = match which {
            0 => FULL_CONSOLE_HEADER.as_bytes(),
            1 => NATIVE_HEADER.as_bytes(),
            2 => b"{\"email\":\"a\",\"first_name\":\"b\",\"last_name\":\"c\"}",
            _ => b"\xEF\xBB\xBF{",
        };
        let mut all = head.to_vec();
        all.extend_from_slice(b"\r\n");
        all.extend_from_slice(&bytes);
        drain(all);
    }

    #[test]
    fn arbitrary_cells_never_panic(cells in proptest::collection::vec("[a-zA-Z0-9|=@/ ,\"\r\n.+-]{0,20}", 16)) {
        let row: Vec<String> = cells.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
        drain(format!("{FULL_CONSOLE_HEADER}\n{}\n", row.join(",")).into_bytes());
        drain(format!("{NATIVE_HEADER}\n{}\n", row.join(",")).into_bytes());
    }
}

fn drain(bytes: Vec<u8>) {
    if let Ok(reader) = open_bytes(bytes) {
        let _ = reader.column_for("email");
        // Errors are fine; only a panic (or an endless iterator) fails.
        for row in reader.take(10_000).flatten() {
            for f in FIELDS {
                let _ = row.column_for(f);
            }
        }
    }
}

// ---- output ---------------------------------------------------------------

#[test]
fn neutralize_csv_cell_prefixes_formula_starts() {
    for s in [
        "=1+1",
        "+12145550198",
        "-2",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "=HYPERLINK(\"http://x\")",
    ] {
        assert_eq!(neutralize_csv_cell(s), format!("'{s}"));
    }
    for s in ["", "Jane", "a=b", " =1", "'=1", "1-2", "jdoe@example.com"] {
        assert_eq!(neutralize_csv_cell(s), s);
    }
}

#[test]
fn input_error_display() {
    let e = InputError {
        file: "a.csv".into(),
        line: 7,
        column: Some("x".into()),
        message: "m".into(),
    };
    assert_eq!(e.to_string(), "a.csv:7: m");
    let e = InputError { line: 0, ..e };
    assert_eq!(e.to_string(), "a.csv: m");
}

#[test]
fn an_emails_only_reader_needs_only_the_email_or_login_column() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let emails = |p: &std::path::Path| -> Vec<String> {
        Reader::open_emails(p)
            .unwrap()
            .map(|r| r.unwrap().input.email)
            .collect()
    };
    let native = write("n.csv", "email\nana@example.com\n");
    assert_eq!(emails(&native), ["ana@example.com"]);
    let console = write("c.csv", "user login\nana@example.com\n");
    assert_eq!(emails(&console), ["ana@example.com"]);
    let json = write("j.jsonl", "{\"email\": \"ana@example.com\"}\n");
    assert_eq!(emails(&json), ["ana@example.com"]);
    // The ordinary reader still requires the names, and neither reads a file without email.
    let errs = Reader::open(&native).unwrap_err();
    assert!(
        errs.iter().any(|e| e.message.contains("first_name")),
        "{errs:?}"
    );
    let none = write("x.csv", "first_name\nAna\n");
    let errs = Reader::open_emails(&none).unwrap_err();
    assert!(
        errs.iter().any(|e| e.message.contains("\"email\"")),
        "{errs:?}"
    );
    let (rows, errs): (Vec<_>, Vec<_>) = Reader::open_emails(write("k.jsonl", "{\"name\": 1}\n"))
        .unwrap()
        .partition(Result::is_ok);
    assert!(rows.is_empty());
    assert!(
        format!("{errs:?}").contains("the required key \\\"email\\\" is missing"),
        "{errs:?}"
    );
}
