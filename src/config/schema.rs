//! From TOML text to a [`Config`], with every problem at once: the text is parsed to a
//! [`toml::Table`] first; unknown keys are collected at every level (the known ones are asked
//! of each section's own `Deserialize`, so the lists cannot drift from the structs); each
//! section is then deserialized on its own, and a key whose value is refused is reported
//! (by its path) and set aside, so the next problem shows too. A missing or refused required
//! key is reported and replaced by a placeholder, so the semantic checks still run on the
//! rest; the caller never hands out a config that had problems.

use serde::de::{self, DeserializeOwned, Visitor};
use toml::{Table, Value};

use super::{
    CacheSection, Config, HubSection, LimitsSection, MetricsSection, SandboxSection,
    SecretsSection, TlsSection, TokensSection, WorkerSection,
};

/// The field names serde expects for the struct `T`, asked of its `Deserialize` impl.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut seen = None;
    let _ = T::deserialize(Introspect(&mut seen));
    seen.unwrap_or(&[])
}

/// A deserializer that records the fields a struct asks for, then stops.
struct Introspect<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("introspected"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A required key and the placeholder that stands in for it once it is reported.
type Required = (&'static str, &'static str);

/// How one section is read.
struct Section {
    name: &'static str,
    /// Its known keys.
    fields: fn() -> &'static [&'static str],
    /// Deserializes it; an error carries the path of the refused value.
    check: fn(Table) -> Result<(), serde_path_to_error::Error<toml::de::Error>>,
    /// Keys that must be present.
    required: &'static [Required],
    /// Whether the file must have it (`[worker]`, `[hub]`).
    mandatory: bool,
}

fn check<T: DeserializeOwned>(
    table: Table,
) -> Result<(), serde_path_to_error::Error<toml::de::Error>> {
    serde_path_to_error::deserialize::<_, T>(Value::Table(table)).map(|_| ())
}

fn section<T: DeserializeOwned>(
    name: &'static str,
    required: &'static [Required],
    mandatory: bool,
) -> Section {
    Section {
        name,
        fields: fields_of::<T>,
        check: check::<T>,
        required,
        mandatory,
    }
}

/// Every section, in the order problems are reported.
fn sections() -> [Section; 11] {
    [
        section::<WorkerSection>(
            "worker",
            &[
                ("id", "placeholder"),
                ("listen", "127.0.0.1:0"),
                ("audience", "placeholder"),
            ],
            true,
        ),
        section::<HubSection>(
            "hub",
            &[("url", "http://placeholder"), ("issuer", "placeholder")],
            true,
        ),
        section::<SecretsSection>("secrets", &[], false),
        section::<TokensSection>("tokens", &[], false),
        section::<LimitsSection>("limits", &[], false),
        section::<CacheSection>("cache", &[], false),
        section::<TlsSection>("tls", &[("cert_file", ""), ("key_file", "")], false),
        section::<SandboxSection>("sandbox", &[], false),
        section::<MetricsSection>("metrics", &[], false),
        section::<super::AiSection>("ai", &[], false),
        section::<super::AuditSection>("audit", &[], false),
    ]
}

/// Reads `text`: the config (with placeholders where values were refused) and the problems
/// found; `Err` when not even that can be built (TOML syntax).
pub(super) fn read(text: &str) -> Result<(Config, Vec<String>), Vec<String>> {
    let mut table: Table =
        toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_owned()])?;
    let mut problems = Vec::new();
    let sections = sections();
    let top = fields_of::<Config>();
    // Unknown top-level keys, and sections that are not tables.
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if !top.contains(&key.as_str()) {
            problems.push(format!("{key}: unknown key"));
            table.remove(&key);
        } else if !table.get(&key).is_some_and(Value::is_table) {
            problems.push(format!("{key}: must be a table ([{key}])"));
            table.remove(&key);
        }
    }
    for s in &sections {
        let present = table.contains_key(s.name);
        if !present && !s.mandatory {
            continue;
        }
        let mut body = match table.remove(s.name) {
            Some(Value::Table(t)) => t,
            _ => Table::new(),
        };
        read_section(s, &mut body, &mut problems);
        table.insert(s.name.to_owned(), Value::Table(body));
    }
    match serde_path_to_error::deserialize::<_, Config>(Value::Table(table)) {
        Ok(config) => Ok((config, problems)),
        Err(e) => {
            problems.push(format!("{}: {}", e.path(), e.inner().message().trim()));
            Err(problems)
        }
    }
}

/// One section: unknown keys, missing required keys, refused values; `body` ends up
/// deserializable (keys set aside, placeholders in).
fn read_section(s: &Section, body: &mut Table, problems: &mut Vec<String>) {
    let known = (s.fields)();
    let keys: Vec<String> = body.keys().cloned().collect();
    for key in keys {
        if !known.contains(&key.as_str()) {
            problems.push(format!("{}.{key}: unknown key", s.name));
            body.remove(&key);
        }
    }
    let placeholder = |body: &mut Table, key: &str| {
        if let Some((k, v)) = s.required.iter().find(|(k, _)| *k == key) {
            body.insert((*k).to_owned(), Value::String((*v).to_owned()));
        }
    };
    for (key, _) in s.required {
        if !body.contains_key(*key) {
            problems.push(format!("{}.{key}: missing (required)", s.name));
            placeholder(body, key);
        }
    }
    // Each round sets one refused value aside; a section has finitely many keys.
    for _ in 0..=known.len() {
        let Err(e) = (s.check)(body.clone()) else {
            return;
        };
        let path = e.path().to_string();
        let why = e.inner().message().trim().to_owned();
        let first = path.split('.').next().unwrap_or_default().to_owned();
        if first.is_empty() || first == "?" || !body.contains_key(&first) {
            problems.push(format!("{}: {why}", s.name));
            return;
        }
        problems.push(format!("{}.{path}: {why}", s.name));
        body.remove(&first);
        placeholder(body, &first);
    }
}
