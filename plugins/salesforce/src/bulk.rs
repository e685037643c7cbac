//! Bulk API 2.0 ingest jobs: CSV in, CSV results out, mapped back to rows by
//! their key (result order is not guaranteed).

use crate::api::{Body, Client};
use crate::util::with_context;
use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Bulk's null marker: an empty cell means "leave the field as it is".
pub const NULL_CELL: &str = "#N/A";

/// The text of one CSV cell. Nulls and empty strings clear the field, as
/// they do through sObject Collections.
pub fn cell(value: &Value) -> String {
    let mut out = String::new();
    value.write_text(&mut out);
    if out.is_empty() {
        return NULL_CELL.into();
    }
    out
}

fn push_quoted(out: &mut String, field: &str) {
    out.push('"');
    for c in field.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// A CSV with every field quoted and LF line endings.
pub fn build_csv(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for line in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        for (i, field) in line.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_quoted(&mut out, field);
        }
        out.push('\n');
    }
    out
}

/// Parse RFC 4180 CSV (quoted or bare fields, LF or CRLF). Returns the header
/// and the rows.
pub fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => in_quotes = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    if any {
        record.push(field);
        records.push(record);
    }
    let mut records = records.into_iter();
    let header = records.next().unwrap_or_default();
    Ok((header, records.collect()))
}

/// `INVALID_EMAIL_ADDRESS:Email: invalid ...` → `INVALID_EMAIL_ADDRESS: Email: invalid ...`,
/// the same shape as collections rejects.
pub fn bulk_error(text: &str) -> String {
    match text.split_once(':') {
        Some((code, message))
            if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
        {
            format!("{code}: {}", message.trim_start())
        }
        _ => text.to_string(),
    }
}

/// How result rows are matched to sent rows.
pub enum Key {
    /// By the value of this column (the external id for upserts, `Id` for
    /// updates and deletes).
    Column(String),
    /// By every original column (inserts have no key).
    WholeRow,
}

impl Key {
    fn of(&self, header: &[String], row: &[String]) -> String {
        let original = header
            .iter()
            .zip(row)
            .filter(|(h, _)| !h.starts_with("sf__"));
        match self {
            Key::Column(name) => original
                .filter(|(h, _)| h.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_lowercase())
                .next()
                .unwrap_or_default(),
            Key::WholeRow => original
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join("\u{1f}"),
        }
    }
}

fn column(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

/// Map the successful and failed result CSVs back to the sent rows. Rows that
/// appear in neither come back as `None`.
pub fn map_results(
    mode: WriteMode,
    key: &Key,
    header: &[String],
    sent: &[Vec<String>],
    successful: &(Vec<String>, Vec<Vec<String>>),
    failed: &(Vec<String>, Vec<Vec<String>>),
) -> Vec<Option<RowResult>> {
    // Several sent rows can share a key (duplicates in one job); each result
    // consumes the next of them.
    let mut pending: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, row) in sent.iter().enumerate() {
        pending.entry(key.of(header, row)).or_default().push_back(i);
    }
    let mut out = vec![None; sent.len()];
    let created_col = column(&successful.0, "sf__Created");
    for row in &successful.1 {
        let created = created_col
            .and_then(|c| row.get(c))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let result = match mode {
            WriteMode::Delete => RowResult::Deleted,
            WriteMode::Update => RowResult::Updated,
            _ if created => RowResult::Created,
            WriteMode::Insert => RowResult::Created,
            _ => RowResult::Updated,
        };
        if let Some(i) = pending
            .get_mut(&key.of(&successful.0, row))
            .and_then(VecDeque::pop_front)
        {
            out[i] = Some(result);
        }
    }
    let error_col = column(&failed.0, "sf__Error");
    for row in &failed.1 {
        let error = error_col
            .and_then(|c| row.get(c))
            .map(String::as_str)
            .unwrap_or("UNKNOWN: no sf__Error");
        let result = if mode == WriteMode::Delete && error.starts_with("ENTITY_IS_DELETED") {
            RowResult::Deleted
        } else {
            RowResult::Rejected(bulk_error(error))
        };
        if let Some(i) = pending
            .get_mut(&key.of(&failed.0, row))
            .and_then(VecDeque::pop_front)
        {
            out[i] = Some(result);
        }
    }
    out
}

fn operation(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Upsert => "upsert",
        WriteMode::Update => "update",
        WriteMode::Delete => "delete",
        WriteMode::Insert | WriteMode::Append => "insert",
    }
}

/// The create-job body.
pub fn job_request(object: &str, mode: WriteMode, external_id: &str) -> serde_json::Value {
    let mut body = serde_json::json!({
        "object": object, "operation": operation(mode),
        "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA",
    });
    if mode == WriteMode::Upsert {
        body["externalIdFieldName"] = external_id.into();
    }
    body
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    state: String,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    number_records_processed: u64,
    #[serde(default)]
    number_records_failed: u64,
}

/// One ingest job's rows.
pub struct Job<'a> {
    pub object: &'a str,
    pub mode: WriteMode,
    /// The upsert's external id field.
    pub external_id: &'a str,
    pub key: Key,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Run a job to completion and return one result per row (`None`: the job
/// did not report the row).
pub fn run(client: &mut Client, job: &Job) -> Result<Vec<Option<RowResult>>, PluginError> {
    let data = client.data_path();
    let context = format!("Bulk API 2.0 {} job on {}", operation(job.mode), job.object);
    let info: JobInfo = client
        .send(
            "POST",
            &format!("{data}/jobs/ingest"),
            Body::Json(job_request(job.object, job.mode, job.external_id)),
        )
        .and_then(|r| r.json())
        .map_err(|e| with_context(e, &format!("{context}: creating the job")))?;
    let job_path = format!("{data}/jobs/ingest/{}", info.id);
    let context = format!("{context} {}", info.id);
    if let Err(e) = upload_and_close(client, &job_path, job) {
        abort(client, &job_path);
        return Err(with_context(e, &context));
    }
    // A job this call gives up on (the wait ran out, polling failed for
    // good) is aborted, so it cannot apply rows after the run has moved on
    // and re-sends them.
    let max_wait = Duration::from_millis(client.config.bulk_max_wait_ms);
    let done = match wait(client, &job_path, max_wait) {
        Ok(done) => done,
        Err(e) => {
            abort(client, &job_path);
            return Err(with_context(e, &context));
        }
    };
    sluice_sdk::info!(
        "salesforce: {context} finished: {} processed, {} failed",
        done.number_records_processed,
        done.number_records_failed
    );
    let successful = results(client, &format!("{job_path}/successfulResults/"))
        .map_err(|e| with_context(e, &context))?;
    let failed = results(client, &format!("{job_path}/failedResults/"))
        .map_err(|e| with_context(e, &context))?;
    Ok(map_results(
        job.mode,
        &job.key,
        &job.header,
        &job.rows,
        &successful,
        &failed,
    ))
}

fn upload_and_close(client: &mut Client, job_path: &str, job: &Job) -> Result<(), PluginError> {
    let csv = build_csv(&job.header, &job.rows).into_bytes();
    client.send("PUT", &format!("{job_path}/batches"), Body::Csv(csv))?;
    client.send(
        "PATCH",
        job_path,
        Body::Json(serde_json::json!({ "state": "UploadComplete" })),
    )?;
    Ok(())
}

/// Best effort: a job we give up on should not run later.
fn abort(client: &mut Client, job_path: &str) {
    if let Err(e) = client.send(
        "PATCH",
        job_path,
        Body::Json(serde_json::json!({ "state": "Aborted" })),
    ) {
        sluice_sdk::warn!("salesforce: could not abort {job_path}: {e:?}");
    }
}

/// Poll until JobComplete. Transient poll failures are retried until the
/// deadline: giving up on a running job costs more than one more poll.
fn wait(client: &mut Client, job_path: &str, max_wait: Duration) -> Result<JobInfo, PluginError> {
    let started = Instant::now();
    let poll = Duration::from_millis(client.config.poll_interval_ms);
    loop {
        let mut pause = poll;
        match client
            .send("GET", job_path, Body::None)
            .and_then(|r| r.json::<JobInfo>())
        {
            Ok(info) if info.state == "JobComplete" => return Ok(info),
            Ok(info) if info.state == "Failed" || info.state == "Aborted" => {
                return Err(PluginError::Permanent(format!(
                    "job ended in state {}: {}",
                    info.state,
                    info.error_message.unwrap_or_default()
                )))
            }
            Ok(_) => {}
            Err(PluginError::RateLimited(r)) => {
                pause = pause.max(Duration::from_millis(r.retry_after_ms))
            }
            Err(PluginError::Retryable(m)) => {
                sluice_sdk::warn!("salesforce: polling {job_path}: {m}")
            }
            Err(e) => return Err(e),
        }
        if started.elapsed() + pause > max_wait {
            return Err(PluginError::Retryable(format!(
                "job did not finish within {} ms (bulk_max_wait_ms); it was aborted",
                max_wait.as_millis()
            )));
        }
        sluice_sdk::http::sleep(pause);
    }
}

/// Fetch a result CSV, retrying transient failures a few times.
fn results(
    client: &mut Client,
    path: &str,
) -> Result<(Vec<String>, Vec<Vec<String>>), PluginError> {
    let mut attempt = 0;
    loop {
        match client.send_accept("GET", path, Body::None, "text/csv") {
            Ok(response) => {
                return parse_csv(&response.text()).map_err(|e| {
                    PluginError::Permanent(format!("unreadable result CSV from {path}: {e}"))
                })
            }
            Err(PluginError::Retryable(_) | PluginError::RateLimited(_)) if attempt < 3 => {
                attempt += 1;
                sluice_sdk::http::sleep(Duration::from_millis(200 * attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cells_and_csv_round_trip() {
        assert_eq!(cell(&Value::Null), "#N/A");
        assert_eq!(cell(&Value::Text(String::new())), "#N/A");
        assert_eq!(cell(&Value::Boolean(true)), "true");
        assert_eq!(
            cell(&Value::Timestamp(1_714_566_600_000_000)),
            "2024-05-01T12:30:00Z"
        );
        let header = s(&["External_Id__c", "Description"]);
        let rows = vec![s(&["A1", "say \"hi\", then\nleave"]), s(&["A2", "#N/A"])];
        let csv = build_csv(&header, &rows);
        assert_eq!(csv, "\"External_Id__c\",\"Description\"\n\"A1\",\"say \"\"hi\"\", then\nleave\"\n\"A2\",\"#N/A\"\n");
        assert_eq!(parse_csv(&csv).unwrap(), (header, rows));
        let bare = parse_csv("a,b\r\n1,\r\n").unwrap();
        assert_eq!(bare, (s(&["a", "b"]), vec![s(&["1", ""])]));
        assert!(parse_csv("\"open").is_err());
    }

    #[test]
    fn maps_results_back_by_key_in_any_order() {
        let header = s(&["External_Id__c", "Email"]);
        let sent = vec![
            s(&["A1", "a@x.com"]),
            s(&["A2", "bad"]),
            s(&["A3", "c@x.com"]),
            s(&["A4", "d@x.com"]),
        ];
        let successful = (
            s(&["sf__Id", "sf__Created", "External_Id__c", "Email"]),
            vec![
                s(&["003C", "false", "A3", "c@x.com"]),
                s(&["003A", "true", "a1", "a@x.com"]),
            ],
        );
        let failed = (
            s(&["sf__Id", "sf__Error", "External_Id__c", "Email"]),
            vec![s(&[
                "",
                "INVALID_EMAIL_ADDRESS:Email: invalid email address: bad",
                "A2",
                "bad",
            ])],
        );
        let out = map_results(
            WriteMode::Upsert,
            &Key::Column("External_Id__c".into()),
            &header,
            &sent,
            &successful,
            &failed,
        );
        assert_eq!(
            out,
            vec![
                Some(RowResult::Created),
                Some(RowResult::Rejected(
                    "INVALID_EMAIL_ADDRESS: Email: invalid email address: bad".into()
                )),
                Some(RowResult::Updated),
                None
            ]
        );
    }

    #[test]
    fn inserts_match_on_the_whole_row_and_duplicates_each_get_one() {
        let header = s(&["LastName"]);
        let sent = vec![s(&["Same"]), s(&["Same"])];
        let successful = (
            s(&["sf__Id", "sf__Created", "LastName"]),
            vec![s(&["1", "true", "Same"]), s(&["2", "true", "Same"])],
        );
        let none = (Vec::new(), Vec::new());
        let out = map_results(
            WriteMode::Insert,
            &Key::WholeRow,
            &header,
            &sent,
            &successful,
            &none,
        );
        assert_eq!(
            out,
            vec![Some(RowResult::Created), Some(RowResult::Created)]
        );
    }

    #[test]
    fn job_request_names_the_external_id_for_upserts_only() {
        assert_eq!(
            job_request("Account", WriteMode::Upsert, "Ext__c")["externalIdFieldName"],
            "Ext__c"
        );
        assert!(job_request("Account", WriteMode::Insert, "")
            .get("externalIdFieldName")
            .is_none());
        assert_eq!(bulk_error("not a code"), "not a code");
    }
}
