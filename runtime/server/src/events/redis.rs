//! The event queue on Redis Streams, shared by every node. Per tenant and priority a
//! stream of deliveries (`plinth:events:q:{tenant}:{priority}`) read through the consumer
//! group `plinth` with `XREADGROUP`; a settled delivery is `XACK`ed and `XDEL`eted in
//! the same `MULTI`, so a stream holds only what is open (that is its trimming). An
//! entry a node took and never settled (the node died) is taken over by another node
//! with `XAUTOCLAIM` once idle longer than the lease, the longest a handler may run; the
//! group's delivery count makes the attempt. Retries wait in a sorted set by due time
//! and go back into their stream when due. Idempotency keys are `SET NX PX`; ordering
//! keys are tickets (`INCR`) served in turn. Accepting a batch is one Lua script:
//! atomic, so a batch is stored whole or not at all.
//!
//! Single Redis (or a primary with replicas), not Redis Cluster: the scripts touch keys
//! they compute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plinth_host::BackendError;
use plinth_host::lock::Recover;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use super::queue::{
    Acceptance, Backlog, DeadLetter, Delivery, EventQueue, Fate, Handle, Priority, Routed,
    Selection, StoredEvent, new_id, over_backlog,
};
use crate::registry::now_ms;

const GROUP: &str = "plinth";
/// How often a node looks for entries of dead nodes to take over, per tenant.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
/// How long one Redis round trip may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A delivery waiting for its key's turn is looked at again after this.
const TURN_WAIT_MS: i64 = 100;

const ACCEPT: &str = r#"
local p, tenant, retention = ARGV[1], ARGV[2], ARGV[3]
local n, i = tonumber(ARGV[4]), 7
local max_open, adding = tonumber(ARGV[5]), tonumber(ARGV[6])
if adding > 0 then
  local open = redis.call('ZCARD', p .. 'retry:' .. tenant) + redis.call('HLEN', p .. 'dead:' .. tenant)
  for _, prio in ipairs({'high', 'normal', 'low'}) do
    open = open + redis.call('XLEN', p .. 'q:' .. tenant .. ':' .. prio)
  end
  if open + adding > max_open then
    return redis.error_reply('BACKLOG ' .. open)
  end
end
local result = {}
local grouped = {}
redis.call('SADD', p .. 't', tenant)
for e = 1, n do
  local id, prio, key, ev, ninst = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  i = i + 5
  if redis.call('SET', p .. 'seen:' .. tenant .. ':' .. id, '1', 'NX', 'PX', retention) then
    result[e] = 1
    local stream = p .. 'q:' .. tenant .. ':' .. prio
    if not grouped[stream] then
      -- A stream is only ever made with its group: creating the group is needed once.
      if redis.call('EXISTS', stream) == 0 then
        redis.call('XGROUP', 'CREATE', stream, 'plinth', '0', 'MKSTREAM')
      end
      grouped[stream] = true
    end
    for k = 0, ninst - 1 do
      local inst = ARGV[i + k]
      local ticket = ''
      if key ~= '' then
        local seq = p .. 'kseq:' .. tenant .. ':' .. inst .. ':' .. key
        ticket = redis.call('INCR', seq)
      end
      redis.call('XADD', stream, '*', 'i', inst, 'e', ev, 'a', '0', 't', ticket)
    end
  else
    result[e] = 0
  end
  i = i + ninst
end
return result
"#;

/// Hands a key's turn on after ticket `ARGV[1]` settled (settling twice is harmless):
/// the next ticket is at least one past it; once every ticket issued has been served,
/// both counters go, and tickets start at 1 again.
const TURN: &str = r#"
local ticket = tonumber(ARGV[1])
local next = tonumber(redis.call('GET', KEYS[1]) or '1')
if ticket + 1 > next then next = ticket + 1 end
local issued = tonumber(redis.call('GET', KEYS[2]) or '0')
if next > issued then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('SET', KEYS[1], next)
end
return next
"#;

/// Puts a dead letter back into its stream, once: two replays racing deliver it once.
const REPLAY: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
redis.pcall('XGROUP', 'CREATE', KEYS[3], 'plinth', '0', 'MKSTREAM')
redis.call('XADD', KEYS[3], '*', 'i', ARGV[2], 'e', ARGV[3], 'a', '0', 't', '')
return 1
"#;

/// The tenants with entries in a stream or retries waiting; a tenant with neither is
/// taken out of the set (in the same script, so an accept cannot slip in between:
/// accepting adds the tenant again), so an idle node's poll costs only the busy ones.
const BUSY: &str = r#"
local p = ARGV[1]
local busy = {}
for _, tenant in ipairs(redis.call('SMEMBERS', p .. 't')) do
  local open = redis.call('ZCARD', p .. 'retry:' .. tenant)
  for _, prio in ipairs({'high', 'normal', 'low'}) do
    open = open + redis.call('XLEN', p .. 'q:' .. tenant .. ':' .. prio)
  end
  if open > 0 then
    busy[#busy + 1] = tenant
  else
    redis.call('SREM', p .. 't', tenant)
  end
end
return busy
"#;

/// Moves due retries of a tenant back into their streams.
const DUE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local d = cjson.decode(m)
  local stream = ARGV[3] .. d.p
  redis.pcall('XGROUP', 'CREATE', stream, 'plinth', '0', 'MKSTREAM')
  redis.call('XADD', stream, '*', 'i', d.i, 'e', d.e, 'a', d.a, 't', d.t)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"#;

/// A delivery waiting in the retry set.
#[derive(Serialize, Deserialize)]
struct Waiting {
    p: String,
    i: String,
    e: String,
    a: String,
    t: String,
    /// Makes equal deliveries distinct members.
    n: String,
}

pub struct RedisQueue {
    client: redis::Client,
    /// Every key's prefix (`plinth:events:` by default): one per Plinth deployment
    /// sharing a Redis.
    prefix: String,
    node: String,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    accept: Script,
    due: Script,
    busy: Script,
    replay: Script,
    reclaimed_at: Mutex<HashMap<String, Instant>>,
    /// Where each stream's scan for entries to take over goes on from.
    reclaim_cursor: Mutex<HashMap<String, String>>,
}

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("event queue (Redis): {e}"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// Stream entries (`[[id, [field, value, …]], …]`) as ids and fields.
fn entries(value: &Value) -> Vec<(String, HashMap<String, String>)> {
    items(value)
        .iter()
        .filter_map(|entry| {
            let [id, fields] = items(entry) else {
                return None;
            };
            let fields = items(fields)
                .chunks(2)
                .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
                .collect();
            Some((text(id)?, fields))
        })
        .collect()
}

/// The millisecond part of a stream id.
fn id_ms(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

impl RedisQueue {
    pub fn open(url: &str, prefix: &str, node: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url)
            .map_err(|e| BackendError::InvalidInput(format!("redis URL {url:?}: {e}")))?;
        Ok(RedisQueue {
            client,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            connection: tokio::sync::Mutex::new(None),
            accept: Script::new(ACCEPT),
            due: Script::new(DUE),
            busy: Script::new(BUSY),
            replay: Script::new(REPLAY),
            reclaimed_at: Mutex::default(),
            reclaim_cursor: Mutex::default(),
        })
    }

    fn stream(&self, tenant: &str, priority: Priority) -> String {
        format!("{}q:{tenant}:{}", self.prefix, priority.as_str())
    }

    fn key(&self, kind: &str, tenant: &str) -> String {
        format!("{}{kind}:{tenant}", self.prefix)
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let connection = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(failed)?;
        Ok(slot.insert(connection).clone())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut connection = self.connection().await?;
        cmd.query_async(&mut connection).await.map_err(failed)
    }

    /// Entries of `stream` this node now owns: new ones (`>`) or, with `reclaim`, ones
    /// another consumer left idle for `lease_ms`.
    async fn read(
        &self,
        tenant: &str,
        priority: Priority,
        max: usize,
        reclaim: Option<i64>,
    ) -> Result<Vec<Delivery>, BackendError> {
        let stream = self.stream(tenant, priority);
        let reply: Value = match reclaim {
            None => {
                let reply = self
                    .query::<Value>(
                        redis::cmd("XREADGROUP")
                            .arg("GROUP")
                            .arg(GROUP)
                            .arg(&self.node)
                            .arg("COUNT")
                            .arg(max)
                            .arg("STREAMS")
                            .arg(&stream)
                            .arg(">"),
                    )
                    .await;
                match reply {
                    // `[[stream, entries]]`, or nil when there is nothing new.
                    Ok(reply) => items(&reply)
                        .first()
                        .and_then(|s| items(s).get(1).cloned())
                        .unwrap_or(Value::Nil),
                    // No group yet: nothing was ever accepted to this stream.
                    Err(e) if e.to_string().contains("NOGROUP") => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
            Some(lease_ms) => {
                let cursor = self
                    .reclaim_cursor
                    .lock()
                    .recover()
                    .get(&stream)
                    .cloned()
                    .unwrap_or_else(|| "0-0".to_owned());
                let reply = self
                    .query::<Value>(
                        redis::cmd("XAUTOCLAIM")
                            .arg(&stream)
                            .arg(GROUP)
                            .arg(&self.node)
                            .arg(lease_ms)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(max),
                    )
                    .await;
                match reply {
                    Ok(reply) => {
                        // The scan goes on from where this one stopped (`0-0`: from the
                        // start again), past entries still being renewed.
                        if let Some(next) = items(&reply).first().and_then(text) {
                            self.reclaim_cursor
                                .lock()
                                .recover()
                                .insert(stream.clone(), next);
                        }
                        items(&reply).get(1).cloned().unwrap_or(Value::Nil)
                    }
                    Err(e) if e.to_string().contains("NOGROUP") => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
        };
        let mut taken = Vec::new();
        for (id, fields) in entries(&reply) {
            let (Some(installation), Some(event), Some(before)) =
                (fields.get("i"), fields.get("e"), fields.get("a"))
            else {
                continue;
            };
            let event: StoredEvent = match serde_json::from_str(event) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(%stream, %id, error = %e, "event queue: unreadable entry left pending");
                    continue;
                }
            };
            let before: u32 = before.parse().unwrap_or(0);
            // Times this entry was handed out: 1 when read now, more when taken over.
            let delivered = match reclaim {
                None => 1,
                Some(_) => self.delivery_count(&stream, &id).await.unwrap_or(2),
            };
            taken.push(Delivery {
                tenant: tenant.to_owned(),
                installation: installation.clone(),
                event,
                attempt: before + delivered,
                handle: Handle::Entry {
                    stream: stream.clone(),
                    id,
                    ticket: fields.get("t").and_then(|t| t.parse().ok()),
                },
            });
        }
        Ok(taken)
    }

    async fn delivery_count(&self, stream: &str, id: &str) -> Result<u32, BackendError> {
        let reply: Value = self
            .query(
                redis::cmd("XPENDING")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(id)
                    .arg(id)
                    .arg(1),
            )
            .await?;
        items(&reply)
            .first()
            .and_then(|entry| items(entry).get(3))
            .and_then(text)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| failed("XPENDING gave no delivery count"))
    }

    /// Whether a delivery with ordering ticket `ticket` is its key's turn.
    async fn is_turn(&self, delivery: &Delivery, ticket: u64) -> Result<bool, BackendError> {
        let next: Option<u64> = self
            .query(redis::cmd("GET").arg(self.next_key(delivery)))
            .await?;
        Ok(ticket <= next.unwrap_or(1))
    }

    /// The `MULTI` that acknowledges and deletes a delivery's entry, plus `more`.
    async fn finish(
        &self,
        delivery: &Delivery,
        more: impl FnOnce(&mut redis::Pipeline),
        turn_over: bool,
    ) -> Result<(), BackendError> {
        let Handle::Entry { stream, id, ticket } = &delivery.handle else {
            return Err(BackendError::InvalidInput(
                "a delivery of another queue".into(),
            ));
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        more(&mut pipe);
        pipe.cmd("XACK").arg(stream).arg(GROUP).arg(id).ignore();
        pipe.cmd("XDEL").arg(stream).arg(id).ignore();
        if turn_over && let Some(ticket) = ticket {
            pipe.cmd("EVAL")
                .arg(TURN)
                .arg(2)
                .arg(self.next_key(delivery))
                .arg(self.seq_key(delivery))
                .arg(*ticket)
                .ignore();
        }
        let mut connection = self.connection().await?;
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(failed)
    }

    fn seq_key(&self, delivery: &Delivery) -> String {
        format!(
            "{}kseq:{}:{}:{}",
            self.prefix,
            delivery.tenant,
            delivery.installation,
            delivery.event.key.as_deref().unwrap_or("")
        )
    }

    fn next_key(&self, delivery: &Delivery) -> String {
        format!(
            "{}knext:{}:{}:{}",
            self.prefix,
            delivery.tenant,
            delivery.installation,
            delivery.event.key.as_deref().unwrap_or("")
        )
    }

    fn waiting(delivery: &Delivery, attempts: u32) -> Result<String, BackendError> {
        let Handle::Entry { ticket, .. } = &delivery.handle else {
            return Err(BackendError::InvalidInput(
                "a delivery of another queue".into(),
            ));
        };
        serde_json::to_string(&Waiting {
            p: delivery.event.priority.as_str().to_owned(),
            i: delivery.installation.clone(),
            e: serde_json::to_string(&delivery.event).map_err(failed)?,
            a: attempts.to_string(),
            t: ticket.map(|t| t.to_string()).unwrap_or_default(),
            n: new_id(),
        })
        .map_err(failed)
    }

    /// Dead letters newest first, read a page at a time from the index by time, until
    /// `limit` of them pass `keep`: never the whole hash at once.
    async fn letters(
        &self,
        tenant: &str,
        limit: usize,
        keep: impl Fn(&DeadLetter) -> bool,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        const PAGE: usize = 500;
        let mut found = Vec::new();
        for page in 0.. {
            let ids: Vec<String> = self
                .query(
                    redis::cmd("ZREVRANGE")
                        .arg(self.key("dead-by-time", tenant))
                        .arg(page * PAGE)
                        .arg((page + 1) * PAGE - 1),
                )
                .await?;
            if ids.is_empty() {
                break;
            }
            let letters: Vec<Option<String>> = self
                .query(redis::cmd("HMGET").arg(self.key("dead", tenant)).arg(&ids))
                .await?;
            for letter in letters.into_iter().flatten() {
                if let Ok(letter) = serde_json::from_str::<DeadLetter>(&letter)
                    && keep(&letter)
                {
                    found.push(letter);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if ids.len() < PAGE {
                break;
            }
        }
        Ok(found)
    }

    /// The dead letters `which` names.
    async fn selected(
        &self,
        tenant: &str,
        which: &Selection,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        match which {
            Selection::One(id) => Ok(self.dead_letter(tenant, id).await?.into_iter().collect()),
            Selection::Installation(id) => {
                self.letters(tenant, usize::MAX, |l| l.installation == *id)
                    .await
            }
            Selection::All => self.letters(tenant, usize::MAX, |_| true).await,
        }
    }
}

#[async_trait]
impl EventQueue for RedisQueue {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn accept(
        &self,
        tenant: &str,
        events: Vec<Routed>,
        retention_ms: i64,
        max_open: u64,
    ) -> Result<Acceptance, BackendError> {
        let adding: u64 = events.iter().map(|r| r.installations.len() as u64).sum();
        let mut invocation = self.accept.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(tenant)
            .arg(retention_ms)
            .arg(events.len())
            .arg(max_open)
            .arg(adding);
        let mut ids = Vec::with_capacity(events.len());
        for Routed {
            event,
            installations,
        } in &events
        {
            invocation
                .arg(&event.id)
                .arg(event.priority.as_str())
                .arg(event.key.as_deref().unwrap_or(""))
                .arg(serde_json::to_string(event).map_err(failed)?)
                .arg(installations.len());
            for installation in installations {
                invocation.arg(installation);
            }
            ids.push(event.id.clone());
        }
        let mut connection = self.connection().await?;
        let fresh: Vec<i64> = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| failed("accepting timed out; the batch may or may not be stored, and posting it again is safe"))?
            .map_err(|e| {
                let text = e.to_string();
                match text.split_once("BACKLOG ") {
                    Some((_, open)) => {
                        let open = open.split_whitespace().next().and_then(|n| n.parse().ok());
                        over_backlog(open.unwrap_or(0), adding, max_open)
                    }
                    None => failed(e),
                }
            })?;
        let mut acceptance = Acceptance::default();
        for (id, fresh) in ids.into_iter().zip(fresh) {
            if fresh == 1 {
                acceptance.accepted.push(id);
            } else {
                acceptance.duplicates.push(id);
            }
        }
        Ok(acceptance)
    }

    async fn tenants(&self) -> Result<Vec<String>, BackendError> {
        let mut connection = self.connection().await?;
        self.busy
            .arg(&self.prefix)
            .invoke_async(&mut connection)
            .await
            .map_err(failed)
    }

    async fn take(
        &self,
        tenant: &str,
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, BackendError> {
        let mut connection = self.connection().await?;
        self.due
            .key(self.key("retry", tenant))
            .arg(now_ms())
            .arg(1000)
            .arg(format!("{}q:{tenant}:", self.prefix))
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(failed)?;
        let reclaim = {
            let mut at = self.reclaimed_at.lock().recover();
            let due = at
                .get(tenant)
                .is_none_or(|last| last.elapsed() >= RECLAIM_EVERY);
            if due {
                at.insert(tenant.to_owned(), Instant::now());
            }
            due
        };
        // Entries read are this node's from then on: a failure later in the take returns
        // what was read, to be run now rather than after the lease.
        let mut taken = Vec::new();
        let reads = Priority::ALL
            .iter()
            .filter(|_| reclaim)
            .map(|p| (*p, Some(lease_ms)))
            .chain(Priority::ALL.iter().map(|p| (*p, None)));
        for (priority, reclaiming) in reads {
            let room = max.saturating_sub(taken.len());
            if room == 0 {
                break;
            }
            match self.read(tenant, priority, room, reclaiming).await {
                Ok(read) => taken.extend(read),
                Err(e) if !taken.is_empty() => {
                    tracing::warn!(%tenant, error = %e, "event queue: a read failed; running what was taken");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        // A delivery whose key has an earlier one open waits for its turn.
        let mut ready = Vec::with_capacity(taken.len());
        for delivery in taken {
            let ticket = match &delivery.handle {
                Handle::Entry {
                    ticket: Some(t), ..
                } => *t,
                _ => {
                    ready.push(delivery);
                    continue;
                }
            };
            if self.is_turn(&delivery, ticket).await? {
                ready.push(delivery);
            } else {
                let due_ms = now_ms() + TURN_WAIT_MS;
                self.settle(&delivery, Fate::Wait { due_ms }).await?;
            }
        }
        Ok(ready)
    }

    async fn settle(&self, delivery: &Delivery, fate: Fate) -> Result<(), BackendError> {
        let retry_set = self.key("retry", &delivery.tenant);
        match fate {
            Fate::Done | Fate::Void => self.finish(delivery, |_| {}, true).await,
            // A wait gives the attempt back: the next run counts the same attempt again.
            Fate::Retry { due_ms } | Fate::Wait { due_ms } => {
                let used = match fate {
                    Fate::Retry { .. } => delivery.attempt,
                    _ => delivery.attempt.saturating_sub(1),
                };
                let member = Self::waiting(delivery, used)?;
                self.finish(
                    delivery,
                    |pipe| {
                        pipe.cmd("ZADD")
                            .arg(&retry_set)
                            .arg(due_ms)
                            .arg(member)
                            .ignore();
                    },
                    false,
                )
                .await
            }
            Fate::Dead { error, receipt } => {
                let letter = DeadLetter {
                    id: new_id(),
                    installation: delivery.installation.clone(),
                    event: delivery.event.clone(),
                    attempts: delivery.attempt,
                    error,
                    receipt: receipt.and_then(|r| serde_json::to_value(*r).ok()),
                    dead_ms: now_ms(),
                };
                let json = serde_json::to_string(&letter).map_err(failed)?;
                self.finish(
                    delivery,
                    |pipe| {
                        pipe.cmd("HSET")
                            .arg(self.key("dead", &delivery.tenant))
                            .arg(&letter.id)
                            .arg(json)
                            .ignore();
                        pipe.cmd("ZADD")
                            .arg(self.key("dead-by-time", &delivery.tenant))
                            .arg(letter.dead_ms)
                            .arg(&letter.id)
                            .ignore();
                    },
                    true,
                )
                .await
            }
        }
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        installation: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        self.letters(tenant, limit, |l| {
            installation.is_none_or(|i| l.installation == i)
        })
        .await
    }

    async fn dead_letter(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, BackendError> {
        let letter: Option<String> = self
            .query(redis::cmd("HGET").arg(self.key("dead", tenant)).arg(id))
            .await?;
        Ok(letter.and_then(|l| serde_json::from_str(&l).ok()))
    }

    async fn touch(&self, delivery: &Delivery) -> Result<(), BackendError> {
        let Handle::Entry { stream, id, .. } = &delivery.handle else {
            return Ok(());
        };
        // Claiming it again to this node resets its idle time; JUSTID leaves the
        // delivery count (the attempt) as it is.
        self.query::<Value>(
            redis::cmd("XCLAIM")
                .arg(stream)
                .arg(GROUP)
                .arg(&self.node)
                .arg(0)
                .arg(id)
                .arg("JUSTID"),
        )
        .await
        .map(|_| ())
    }

    async fn replay(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError> {
        let letters = self.selected(tenant, which).await?;
        let mut connection = self.connection().await?;
        let mut replayed = 0;
        for letter in &letters {
            let n: u64 = self
                .replay
                .key(self.key("dead", tenant))
                .key(self.key("dead-by-time", tenant))
                .key(self.stream(tenant, letter.event.priority))
                .key(format!("{}t", self.prefix))
                .arg(&letter.id)
                .arg(&letter.installation)
                .arg(serde_json::to_string(&letter.event).map_err(failed)?)
                .arg(tenant)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            replayed += n;
        }
        Ok(replayed)
    }

    async fn purge(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError> {
        let letters = self.selected(tenant, which).await?;
        let mut purged = 0;
        for chunk in letters.chunks(500) {
            let ids: Vec<&str> = chunk.iter().map(|l| l.id.as_str()).collect();
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("HDEL").arg(self.key("dead", tenant)).arg(&ids);
            pipe.cmd("ZREM")
                .arg(self.key("dead-by-time", tenant))
                .arg(&ids)
                .ignore();
            let mut connection = self.connection().await?;
            let (n,): (u64,) = pipe.query_async(&mut connection).await.map_err(failed)?;
            purged += n;
        }
        Ok(purged)
    }

    async fn backlog(&self, tenant: &str) -> Result<Backlog, BackendError> {
        let mut pipe = redis::pipe();
        for priority in Priority::ALL {
            pipe.cmd("XLEN").arg(self.stream(tenant, priority));
            pipe.cmd("XRANGE")
                .arg(self.stream(tenant, priority))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        pipe.cmd("ZCARD").arg(self.key("retry", tenant));
        pipe.cmd("HLEN").arg(self.key("dead", tenant));
        let mut connection = self.connection().await?;
        let replies: Vec<Value> = pipe.query_async(&mut connection).await.map_err(failed)?;
        let number = |v: &Value| text(v).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        let mut backlog = Backlog::default();
        for pair in replies[..6].chunks(2) {
            backlog.waiting += number(&pair[0]);
            if let Some((id, _)) = entries(&pair[1]).first()
                && let Some(ms) = id_ms(id)
            {
                backlog.oldest_ms = Some(backlog.oldest_ms.map_or(ms, |o: i64| o.min(ms)));
            }
        }
        backlog.waiting += number(&replies[6]);
        backlog.dead_letters = number(&replies[7]);
        Ok(backlog)
    }

    async fn forget_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        let mut del = redis::cmd("DEL");
        for priority in Priority::ALL {
            del.arg(self.stream(tenant, priority));
        }
        del.arg(self.key("retry", tenant))
            .arg(self.key("dead", tenant))
            .arg(self.key("dead-by-time", tenant));
        self.query::<()>(&del).await?;
        self.query::<()>(
            redis::cmd("SREM")
                .arg(format!("{}t", self.prefix))
                .arg(tenant),
        )
        .await?;
        for pattern in ["seen", "kseq", "knext"] {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .query(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(format!("{}{pattern}:{tenant}:*", self.prefix))
                            .arg("COUNT")
                            .arg(1000),
                    )
                    .await?;
                if !keys.is_empty() {
                    self.query::<()>(redis::cmd("DEL").arg(keys)).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }
}
