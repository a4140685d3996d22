//! The blob routes. Every one needs a session.
//!
//! Who may do what:
//!
//! - create: a device that is a member of the conversation, within the
//!   size limit, the account's quota and [`MAX_UNFINISHED_UPLOADS`];
//! - send parts, read the status, delete (before it is sent): the device
//!   that created the upload;
//! - download: the uploading account, or, once a message shares the blob,
//!   member devices of its conversation.
//!
//! Everything else, and an id that does not exist, gets the same `404`, so
//! ids cannot be probed.

use super::range::{self, Requested};
use super::store::{StoreError, discard};
use super::{Blobs, MAX_UNFINISHED_UPLOADS, PART_READ_TIMEOUT, PARTS_PER_ACCOUNT, human_bytes};
use crate::auth::AuthDevice;
use crate::db::{device_from_db, device_to_db, u64_from_db, u64_to_db};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use rampart_proto::api::{BlobStatus, FilePolicy, NewBlob};
use rampart_proto::limits::BLOB_PART_BYTES;
use rampart_proto::{BlobId, DeviceId, ErrorCode};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sqlx::{Row as _, SqlitePool};

const PART: u64 = BLOB_PART_BYTES as u64;

fn not_found() -> ApiError {
    ApiError::not_found("no such file: it was deleted or has expired, or it is not shared with you")
}

fn parse_id(s: &str) -> Result<BlobId, ApiError> {
    BlobId::parse(s).map_err(|_| ApiError::bad_request("a file id is 64 hexadecimal digits"))
}

/// A store failure as clients see it: lack of space is theirs to know
/// (retry later), anything else is logged and answered with a bare 500.
pub fn store_failure(e: StoreError) -> ApiError {
    match e {
        StoreError::Full(cause) => {
            tracing::warn!(%cause, "blob store is full");
            ApiError::new(
                ErrorCode::StorageFull,
                "the server has no room to store files right now; try again later \
                 (the upload resumes where it stopped)",
            )
        }
        e => ApiError::internal(format!("blob store: {e}")),
    }
}

/// A blob's row, as the upload routes need it.
struct Upload {
    id: BlobId,
    device: Option<DeviceId>,
    size: u64,
    received: u64,
    upload: Option<String>,
    complete: bool,
}

impl Upload {
    fn status(&self) -> BlobStatus {
        BlobStatus {
            id: self.id,
            size: self.size,
            received: self.received,
            complete: self.complete,
        }
    }
}

/// The row of `id` if `device` created it; `None` for a missing id and for
/// anyone else's upload alike.
async fn upload_of(
    pool: &SqlitePool,
    id: BlobId,
    device: DeviceId,
) -> Result<Option<Upload>, ApiError> {
    let row = sqlx::query(
        "SELECT uploader_device, size, received, upload, complete FROM blobs WHERE id = ?",
    )
    .bind(id.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let upload = Upload {
        id,
        device: device_from_db(row.try_get("uploader_device")?),
        size: u64_from_db(row.try_get("size")?),
        received: u64_from_db(row.try_get("received")?),
        upload: row.try_get("upload")?,
        complete: row.try_get::<i64, _>("complete")? != 0,
    };
    Ok((upload.device == Some(device)).then_some(upload))
}

/// Bytes of blobs the account holds (uploads in progress included).
async fn used_bytes(pool: &SqlitePool, user_id: i64) -> Result<u64, ApiError> {
    let used: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE uploader_user = ?")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
    Ok(u64_from_db(used))
}

/// `POST /v1/blobs`: starts an upload (`201` with its status).
pub async fn create(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(req): ApiJson<NewBlob>,
) -> Result<(StatusCode, ApiJson<BlobStatus>), ApiError> {
    let blobs = &state.blobs;
    if req.size == 0 {
        return Err(ApiError::bad_request(
            "an upload has at least 1 byte (an encrypted file always does)",
        ));
    }
    if req.size > blobs.max_file_bytes {
        let (mut limit, mut this) = (human_bytes(blobs.max_file_bytes), human_bytes(req.size));
        if limit == this {
            limit = format!("{limit} ({} bytes)", blobs.max_file_bytes);
            this = format!("{} bytes", req.size);
        }
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("files are at most {limit} on this server, and this one is {this}"),
        ));
    }
    let member: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM group_members WHERE group_id = ? AND device_id = ?")
            .bind(req.group.as_bytes().as_slice())
            .bind(device_to_db(auth.device_id))
            .fetch_optional(&state.pool)
            .await?;
    if member.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotMember,
            "this device is not a member of that conversation",
        ));
    }
    let mut raw = [0u8; BlobId::LEN];
    OsRng.fill_bytes(&mut raw);
    let id = BlobId::from_random(raw);

    // Check and insert in one write transaction, so two uploads started at
    // once cannot both fit into the same free space.
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "SELECT COALESCE(SUM(size), 0) AS used, COALESCE(SUM(complete = 0), 0) AS unfinished \
         FROM blobs WHERE uploader_user = ?",
    )
    .bind(auth.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if row.try_get::<i64, _>("unfinished")? >= MAX_UNFINISHED_UPLOADS {
        return Err(ApiError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "you have {MAX_UNFINISHED_UPLOADS} uploads in progress, the most allowed: \
                 finish or delete one before starting another"
            ),
        ));
    }
    let used = u64_from_db(row.try_get("used")?);
    if used.saturating_add(req.size) > blobs.quota_bytes {
        return Err(ApiError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "this file ({}) does not fit in your file quota: {} of {} free. Delete uploads \
                 you did not send, recall sent files you no longer need, or wait until they expire",
                human_bytes(req.size),
                human_bytes(blobs.quota_bytes.saturating_sub(used)),
                human_bytes(blobs.quota_bytes)
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO blobs (id, group_id, uploader_user, uploader_device, size, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id.as_bytes().as_slice())
    .bind(req.group.as_bytes().as_slice())
    .bind(auth.user_id)
    .bind(device_to_db(auth.device_id))
    .bind(u64_to_db(req.size))
    .bind(state.now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // The row first: the store then never holds an upload nobody knows of
    // (but for a crash in between, which the orphan collector handles).
    match blobs.store.begin(id).await {
        Ok(None) => {}
        Ok(Some(handle)) => {
            sqlx::query("UPDATE blobs SET upload = ? WHERE id = ?")
                .bind(handle)
                .bind(id.as_bytes().as_slice())
                .execute(&state.pool)
                .await?;
        }
        Err(e) => {
            sqlx::query("DELETE FROM blobs WHERE id = ?")
                .bind(id.as_bytes().as_slice())
                .execute(&state.pool)
                .await?;
            return Err(store_failure(e));
        }
    }
    tracing::debug!(blob = ?id, size = req.size, "upload started");
    Ok((
        StatusCode::CREATED,
        ApiJson(BlobStatus {
            id,
            size: req.size,
            received: 0,
            complete: false,
        }),
    ))
}

/// The `offset` of `?offset=N`.
fn parse_offset(query: Option<&str>) -> Result<u64, ApiError> {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("offset="))
        .filter(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "add ?offset=N to the URL: the byte offset this part starts at \
                 (the upload status's `received`)",
            )
        })
}

fn resume_here(upload: &Upload) -> ApiError {
    if upload.complete {
        return ApiError::conflict("this upload is complete: there is nothing more to send");
    }
    ApiError::conflict(format!(
        "the server has {} of this file's {} bytes: resume at offset {}",
        upload.received, upload.size, upload.received
    ))
}

fn too_long(upload: &Upload, offset: u64, part_len: u64) -> ApiError {
    let message = if offset + part_len == upload.size {
        format!(
            "this part goes past the declared size of the file ({} bytes): the last part \
             carries the remaining {part_len} bytes",
            upload.size
        )
    } else {
        format!("a part carries exactly {PART} bytes (the last one the rest)")
    };
    ApiError::new(ErrorCode::TooLarge, message)
}

fn interrupted() -> ApiError {
    ApiError::bad_request("the part was not received completely; ask for the status and resume")
}

/// Reads exactly `len` bytes of body, never holding more.
async fn read_part(body: Body, upload: &Upload, offset: u64, len: u64) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(BLOB_PART_BYTES));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| interrupted())?;
        if (buf.len() + chunk.len()) as u64 > len {
            return Err(too_long(upload, offset, len));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != len {
        return Err(ApiError::bad_request(format!(
            "this part carried {} bytes, but a part at offset {offset} carries exactly {len}",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}

/// Reads and discards a retried part, counting it against `len`.
async fn skip_part(body: Body, upload: &Upload, offset: u64, len: u64) -> Result<(), ApiError> {
    let mut seen = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        seen += chunk.map_err(|_| interrupted())?.len() as u64;
        if seen > len {
            return Err(too_long(upload, offset, len));
        }
    }
    Ok(())
}

/// Completes a fully received upload in the store, then marks it complete.
/// Safe to repeat: completing in the store is idempotent.
async fn finish(state: &AppState, upload: &mut Upload) -> Result<(), ApiError> {
    let tags: Vec<String> =
        sqlx::query_scalar("SELECT tag FROM blob_parts WHERE blob_id = ? ORDER BY idx")
            .bind(upload.id.as_bytes().as_slice())
            .fetch_all(&state.pool)
            .await?;
    let parts = upload.size.div_ceil(PART);
    if tags.len() as u64 != parts {
        return Err(ApiError::internal(format!(
            "upload {:?} has {} part records for {parts} parts",
            upload.id,
            tags.len()
        )));
    }
    state
        .blobs
        .store
        .complete(upload.id, upload.upload.clone(), upload.size, tags)
        .await
        .map_err(store_failure)?;
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("UPDATE blobs SET complete = 1, upload = NULL WHERE id = ?")
        .bind(upload.id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM blob_parts WHERE blob_id = ?")
        .bind(upload.id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    upload.complete = true;
    upload.upload = None;
    tracing::debug!(blob = ?upload.id, size = upload.size, "upload complete");
    Ok(())
}

fn busy() -> ApiError {
    ApiError::conflict(
        "another request is writing this upload: wait for it to finish, then ask for the status",
    )
}

/// `PUT /v1/blobs/{blob_id}?offset=N`: one part, at the offset the server
/// has confirmed. A part it already has is answered with the status without
/// writing (the answer to the first try was lost); any other offset is a
/// `409` naming the offset to resume at.
pub async fn put(
    State(state): State<AppState>,
    auth: AuthDevice,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson<BlobStatus>, ApiError> {
    let id = parse_id(&id)?;
    let offset = parse_offset(query.as_deref())?;
    let blobs: &Blobs = &state.blobs;
    if upload_of(&state.pool, id, auth.device_id).await?.is_none() {
        return Err(not_found());
    }
    let _busy = blobs.try_busy(id).ok_or_else(busy)?;
    // Read again under the guard: a request that just finished moved it.
    let mut upload = upload_of(&state.pool, id, auth.device_id)
        .await?
        .ok_or_else(not_found)?;
    if offset % PART != 0 || offset >= upload.size || offset > upload.received {
        return Err(resume_here(&upload));
    }
    let part_len = (upload.size - offset).min(PART);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > part_len) {
        return Err(too_long(&upload, offset, part_len));
    }

    if offset < upload.received {
        skip_part(body, &upload, offset, part_len).await?;
        if upload.received == upload.size && !upload.complete {
            finish(&state, &mut upload).await?;
        }
        return Ok(ApiJson(upload.status()));
    }

    let written = {
        let _sender = blobs.try_sender(auth.user_id).ok_or_else(|| {
            state
                .metrics
                .rate_limited(crate::metrics::Limit::UploadParts);
            ApiError::slow_down(
                1,
                format!(
                    "this account is already sending {PARTS_PER_ACCOUNT} parts at once: \
                     wait for one to finish"
                ),
            )
        })?;
        // Bounds the parts in memory server-wide; held until written.
        let _permit = blobs
            .writes
            .acquire()
            .await
            .map_err(|_| ApiError::unavailable("the server is shutting down; retry later"))?;
        let data = tokio::time::timeout(
            PART_READ_TIMEOUT,
            read_part(body, &upload, offset, part_len),
        )
        .await
        .map_err(|_| {
            ApiError::bad_request(
                "the part arrived too slowly and was dropped; ask for the status and resume",
            )
        })??;
        let index = u32::try_from(offset / PART)
            .map_err(|_| ApiError::internal("part index out of range"))?;
        blobs
            .store
            .put_part(id, upload.upload.clone(), index, data)
            .await
            .map(|tag| (index, tag))
    };
    let (index, tag) = written.map_err(|e| match e {
        // Deleted while the part was on its way.
        StoreError::NotFound => not_found(),
        e => store_failure(e),
    })?;

    let received = offset + part_len;
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("INSERT OR REPLACE INTO blob_parts (blob_id, idx, tag) VALUES (?, ?, ?)")
        .bind(id.as_bytes().as_slice())
        .bind(i64::from(index))
        .bind(tag)
        .execute(&mut *tx)
        .await?;
    let moved = sqlx::query("UPDATE blobs SET received = ? WHERE id = ? AND received = ?")
        .bind(u64_to_db(received))
        .bind(id.as_bytes().as_slice())
        .bind(u64_to_db(offset))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if moved == 0 {
        // Deleted (or expired) while the part was written.
        return Err(not_found());
    }
    tx.commit().await?;
    upload.received = received;
    if received == upload.size {
        finish(&state, &mut upload).await?;
    }
    Ok(ApiJson(upload.status()))
}

/// `GET /v1/blobs/{blob_id}/status`: where an upload stands (its creating
/// device only). An upload whose bytes all arrived but whose completion
/// failed is completed here.
pub async fn status(
    State(state): State<AppState>,
    auth: AuthDevice,
    Path(id): Path<String>,
) -> Result<ApiJson<BlobStatus>, ApiError> {
    let id = parse_id(&id)?;
    let mut upload = upload_of(&state.pool, id, auth.device_id)
        .await?
        .ok_or_else(not_found)?;
    if upload.received == upload.size
        && !upload.complete
        && let Some(_busy) = state.blobs.try_busy(id)
    {
        upload = upload_of(&state.pool, id, auth.device_id)
            .await?
            .ok_or_else(not_found)?;
        if !upload.complete {
            finish(&state, &mut upload).await?;
        }
    }
    Ok(ApiJson(upload.status()))
}

/// `GET /v1/blobs/{blob_id}`: the blob's bytes, streamed from the store.
/// `Range: bytes=N-` answers `206` from byte N.
pub async fn download(
    State(state): State<AppState>,
    auth: AuthDevice,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let row = sqlx::query(
        "SELECT b.size, b.complete, b.expires_at, b.uploader_user, \
         b.message_key IS NOT NULL AS attached, \
         EXISTS (SELECT 1 FROM group_members m \
                 WHERE m.group_id = b.group_id AND m.device_id = ?) AS member \
         FROM blobs b WHERE b.id = ?",
    )
    .bind(device_to_db(auth.device_id))
    .bind(id.as_bytes().as_slice())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(not_found)?;
    let now = state.now();
    let readable = row.try_get::<i64, _>("complete")? != 0
        && row
            .try_get::<Option<i64>, _>("expires_at")?
            .is_none_or(|t| t > now)
        && (row.try_get::<i64, _>("uploader_user")? == auth.user_id
            || (row.try_get::<bool, _>("attached")? && row.try_get::<bool, _>("member")?));
    if !readable {
        return Err(not_found());
    }
    let size = u64_from_db(row.try_get("size")?);
    let range_header = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| bad_range())?),
    };
    let (status, range) = match range::parse(range_header, size).map_err(|_| bad_range())? {
        Requested::Whole => (StatusCode::OK, 0..size),
        Requested::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start..end),
        Requested::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                ApiError::bad_request(format!(
                    "the file has {size} bytes: a download resumes at an offset below that"
                )),
            )
                .into_response());
        }
    };
    let stream = state
        .blobs
        .store
        .read(id, range.clone())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                tracing::warn!(blob = ?id, "a complete blob's object is missing from the store");
                not_found()
            }
            e => store_failure(e),
        })?;
    let stream = stream.inspect_err(move |e| {
        tracing::warn!(blob = ?id, error = %e, "reading a blob failed mid-download");
    });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, range.end - range.start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    response
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

fn bad_range() -> ApiError {
    ApiError::bad_request("the Range header must be bytes=N- (resume from byte N)")
}

/// `DELETE /v1/blobs/{blob_id}`: the creating device drops an upload it has
/// not sent (complete or not), freeing its quota. A sent file goes with its
/// message (recall or expiry).
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthDevice,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "SELECT uploader_device, message_key IS NOT NULL AS attached, upload, complete \
         FROM blobs WHERE id = ?",
    )
    .bind(id.as_bytes().as_slice())
    .fetch_optional(&mut *tx)
    .await?
    .filter(|row| {
        row.try_get("uploader_device")
            .is_ok_and(|d| device_from_db(d) == Some(auth.device_id))
    })
    .ok_or_else(not_found)?;
    if row.try_get::<bool, _>("attached")? {
        return Err(ApiError::conflict(
            "this file was sent in a message: recall the message to delete it",
        ));
    }
    let upload: Option<String> = row.try_get("upload")?;
    let complete = row.try_get::<i64, _>("complete")? != 0;
    sqlx::query("DELETE FROM blobs WHERE id = ?")
        .bind(id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    discard(state.blobs.store.as_ref(), id, upload, complete).await;
    tracing::debug!(blob = ?id, "upload deleted by its uploader");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/policy/files`: the limits, and how much the caller's account holds.
pub async fn policy(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<FilePolicy>, ApiError> {
    Ok(ApiJson(FilePolicy {
        max_file_bytes: state.blobs.max_file_bytes,
        quota_bytes: state.blobs.quota_bytes,
        used_bytes: used_bytes(&state.pool, auth.user_id).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset(Some("offset=0")).ok(), Some(0));
        assert_eq!(
            parse_offset(Some("x=1&offset=8388608")).ok(),
            Some(8_388_608)
        );
        for bad in [
            None,
            Some(""),
            Some("offset="),
            Some("offset=-1"),
            Some("offset=1e3"),
            Some("offset=99999999999999999999999"),
        ] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
    }
}
