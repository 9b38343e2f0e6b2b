//! Environment variable expansion in objstore.yml text.
//!
//! Deployments keep secrets out of the config file by writing `${AWS_SECRET_KEY}` (the common
//! manifest convention) or `$(AWS_SECRET_KEY)` (Thanos' own syntax) and injecting the value into
//! the process environment. Expansion happens on the raw text before YAML parsing, as Thanos does.
//! A `$` not followed by `{NAME}` or `(NAME)` is left alone, so passwords containing `$` survive.

use crate::Error;

/// Replaces `${NAME}` and `$(NAME)` with the value of the environment variable `NAME`, looked up
/// through `lookup`. An unset variable is an error naming it rather than a silent empty string,
/// because an empty secret key produces baffling authentication errors much later.
pub(crate) fn expand_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let close = match after.chars().next() {
            Some('{') => Some('}'),
            Some('(') => Some(')'),
            _ => None,
        };
        let replaced = close.and_then(|close| {
            let body = &after[1..];
            let end = body.find(close)?;
            let name = &body[..end];
            is_var_name(name).then_some((name, end + 2))
        });
        match replaced {
            Some((name, consumed)) => {
                let value = lookup(name).ok_or_else(|| Error::EnvVarNotSet {
                    name: name.to_string(),
                })?;
                out.push_str(&value);
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::expand_env;
    use crate::Error;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("secret".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_both_syntaxes() {
        assert_eq!(expand_env("a: ${KEY}", env).unwrap(), "a: secret");
        assert_eq!(expand_env("a: $(KEY)/x", env).unwrap(), "a: secret/x");
        assert_eq!(
            expand_env("${KEY}${EMPTY}${KEY}", env).unwrap(),
            "secretsecret"
        );
    }

    #[test]
    fn leaves_other_dollars_alone() {
        for text in [
            "pa$$word",
            "$",
            "${",
            "${}",
            "${not valid}",
            "$x",
            "cost: 5$",
            "${1A}",
        ] {
            assert_eq!(expand_env(text, env).unwrap(), text);
        }
    }

    #[test]
    fn unset_variable_is_named() {
        let err = expand_env("secret_key: ${MISSING_VAR}", env).unwrap_err();
        assert!(matches!(&err, Error::EnvVarNotSet { name } if name == "MISSING_VAR"));
        assert!(err.to_string().contains("MISSING_VAR"), "{err}");
    }
}
