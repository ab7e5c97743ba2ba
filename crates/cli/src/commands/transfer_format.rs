//! The file of `durable export` / `durable import`: JSON lines, version
//! [`VERSION`] (docs/export.md). The first line is a header; then each
//! component a run needs, before that run; then the runs:
//!
//! ```text
//! {"durable_export":1,"kind":"header","exported_at_ms":...}
//! {"durable_export":1,"kind":"component","digest":"...","name":"onboarding","wasm_base64":"..."}
//! {"durable_export":1,"kind":"run","run":{"id":"...",...},"records":{"steps":[{...}],...}}
//! ```
//!
//! A run's columns and its records' rows are the database's columns by
//! name (`durable::store::transfer`), text as JSON strings (JSON inputs and
//! outputs too, byte for byte), integers as numbers, NULL as null.

use base64::Engine as _;
use durable::store::transfer::{ComponentExport, Field, RECORDS, Row, RunExport};
use serde_json::{Map, Value, json};

/// The version of the format this durable writes and reads.
pub const VERSION: u64 = 1;

/// One line of a file, read.
pub enum Line {
    /// The header.
    Header,
    /// A component.
    Component(ComponentExport),
    /// A run.
    Run(Box<RunExport>),
}

pub fn header_line() -> String {
    json!({"durable_export": VERSION, "kind": "header", "exported_at_ms": durable::clock::now_ms()})
        .to_string()
}

pub fn component_line(c: &ComponentExport) -> String {
    json!({
        "durable_export": VERSION,
        "kind": "component",
        "digest": c.digest,
        "name": c.name,
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(&c.bytes),
    })
    .to_string()
}

pub fn run_line(run: &RunExport) -> String {
    let mut records = Map::new();
    for (table, rows) in &run.records {
        records.insert(table.clone(), rows.iter().map(row_json).collect());
    }
    json!({
        "durable_export": VERSION,
        "kind": "run",
        "run": row_json(&run.run),
        "records": records,
    })
    .to_string()
}

fn row_json(row: &Row) -> Value {
    let mut object = Map::new();
    for (column, field) in row {
        let value = match field {
            Field::Null => Value::Null,
            Field::Int(i) => json!(i),
            Field::Text(t) => Value::String(t.clone()),
        };
        object.insert(column.clone(), value);
    }
    Value::Object(object)
}

/// Parses one line.
///
/// # Errors
/// What is wrong with it.
pub fn parse(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("durable_export").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "format version {v}: this durable reads version {VERSION} (upgrade durable)"
            ));
        }
        None => return Err("not a line of `durable export` (no \"durable_export\")".into()),
    }
    match value.get("kind").and_then(Value::as_str) {
        Some("header") => Ok(Line::Header),
        Some("component") => {
            let text = |k: &str| value.get(k).and_then(Value::as_str);
            let digest = text("digest").ok_or("a component without a digest")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text("wasm_base64").ok_or("a component without wasm_base64")?)
                .map_err(|e| format!("component {digest}: wasm_base64: {e}"))?;
            Ok(Line::Component(ComponentExport {
                digest: digest.to_string(),
                name: text("name").map(str::to_string),
                bytes,
            }))
        }
        Some("run") => {
            let run = row(value.get("run").ok_or("a run line without \"run\"")?)?;
            let records_json = value
                .get("records")
                .and_then(Value::as_object)
                .ok_or("a run line without \"records\"")?;
            if let Some(unknown) = records_json
                .keys()
                .find(|k| !RECORDS.iter().any(|t| t.name == k.as_str()))
            {
                return Err(format!(
                    "unknown table {unknown:?} (exported by a newer durable?)"
                ));
            }
            let mut records = Vec::new();
            for table in RECORDS {
                let rows = match records_json.get(table.name) {
                    None => Vec::new(),
                    Some(Value::Array(rows)) => rows.iter().map(row).collect::<Result<_, _>>()?,
                    Some(_) => return Err(format!("records.{}: not an array", table.name)),
                };
                records.push((table.name.to_string(), rows));
            }
            Ok(Line::Run(Box::new(RunExport { run, records })))
        }
        _ => Err("\"kind\" is none of header, component, run".into()),
    }
}

fn row(value: &Value) -> Result<Row, String> {
    let object = value.as_object().ok_or("a row that is not an object")?;
    object
        .iter()
        .map(|(column, v)| {
            let field = match v {
                Value::Null => Field::Null,
                Value::String(s) => Field::Text(s.clone()),
                Value::Number(n) => Field::Int(
                    n.as_i64()
                        .ok_or_else(|| format!("{column}: {n} is not a 64-bit integer"))?,
                ),
                other => {
                    return Err(format!(
                        "{column}: {other} is neither text, an integer nor null"
                    ));
                }
            };
            Ok((column.clone(), field))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written_and_others_are_refused() {
        let run = RunExport {
            // Columns by name, as JSON objects keep them.
            run: vec![
                ("id".into(), Field::Text("r".into())),
                ("output".into(), Field::Null),
                ("seed".into(), Field::Int(-7)),
            ],
            records: RECORDS
                .iter()
                .map(|t| (t.name.to_string(), Vec::new()))
                .collect(),
        };
        let Ok(Line::Run(back)) = parse(&run_line(&run)) else {
            panic!("not a run");
        };
        assert_eq!(*back, run);
        let c = ComponentExport {
            digest: "d".into(),
            name: None,
            bytes: vec![0, 1, 2, 255],
        };
        let Ok(Line::Component(back)) = parse(&component_line(&c)) else {
            panic!("not a component");
        };
        assert_eq!(back, c);
        assert!(matches!(parse(&header_line()), Ok(Line::Header)));
        for bad in [
            "nope",
            "{}",
            r#"{"durable_export":2,"kind":"run"}"#,
            r#"{"durable_export":1,"kind":"run","run":{"id":1.5},"records":{}}"#,
            r#"{"durable_export":1,"kind":"run","run":{},"records":{"secrets":[]}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
