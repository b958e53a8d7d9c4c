//! The Redis backend.
//!
//! Keys: a namespace `ns` is tagged `{len}:{ns}` (its byte length, then the
//! namespace), which no other namespace shares whatever its bytes. The
//! value of `key` lives at `shanhai:kv:{len}:{ns}:{key}`, and the sorted set
//! `shanhai:idx:{len}:{ns}` (every score 0, so ordered by bytes) indexes
//! the namespace's keys for `list`: ZRANGEBYLEX pages through it without
//! SCAN's duplicates, glob patterns or whole-keyspace walks.
//! `shanhai:exp:{len}:{ns}` scores the keys that have a TTL by their expiry.
//!
//! Values expire by Redis's own TTL (`SET .. PX`). Every write is one Lua
//! script, so the index moves with the value atomically, also across
//! gateways. Index entries of keys Redis has expired are dropped when a
//! listing meets them, and each write also reaps up to 16 of the
//! namespace's due entries, so an index never outgrows its live keys by
//! more than what expired since the namespace's last write.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::{KeyPage, KvError, ttl_ms};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before it fails as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Lua shared by the write scripts.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Forgets index entries of keys Redis has expired, a few per write.
local function reap(index, expiry, prefix, now)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 16)
  for _, member in ipairs(due) do
    if redis.call('EXISTS', prefix .. member) == 0 then
      redis.call('ZREM', index, member)
      redis.call('ZREM', expiry, member)
    end
  end
end
-- Stores a value with an optional TTL in ms ('' for none), and indexes it.
local function store(key, index, expiry, member, value, ttl, now)
  if ttl == '' then
    redis.call('SET', key, value)
    redis.call('ZREM', expiry, member)
  else
    redis.call('SET', key, value, 'PX', ttl)
    redis.call('ZADD', expiry, now + tonumber(ttl), member)
  end
  redis.call('ZADD', index, 0, member)
end
";

// KEYS: value, index, expiry. ARGV: value-key prefix, member, value, ttl.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local now = now_ms()
reap(KEYS[2], KEYS[3], ARGV[1], now)
store(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], now)
return 1"
    ))
});

// KEYS: value, index, expiry. ARGV: member.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed",
    )
});

// KEYS: value, index, expiry. ARGV: value-key prefix, member, '1' if a
// value is expected ('0': absence), the expected value, new value, ttl.
static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local current = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if current ~= ARGV[4] then return 0 end
elseif current then
  return 0
end
local now = now_ms()
reap(KEYS[2], KEYS[3], ARGV[1], now)
store(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[5], ARGV[6], now)
return 1"
    ))
});

// KEYS: value, index, expiry. ARGV: value-key prefix, member, delta.
// Returns the sum as text (an integer reply would pass through a Lua double
// and lose precision past 2^53), or nil when INCRBY refuses the value.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
reap(KEYS[2], KEYS[3], ARGV[1], now_ms())
local existed = redis.call('EXISTS', KEYS[1])
local sum = redis.pcall('INCRBY', KEYS[1], ARGV[3])
if type(sum) == 'table' and sum.err then return false end
if existed == 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
return redis.call('GET', KEYS[1])"
    ))
});

// KEYS: index, expiry. ARGV: value-key prefix, ZRANGEBYLEX min and max,
// limit. Returns {1 if more keys follow, keys}. Entries whose key has
// expired are removed as they are met.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local limit = tonumber(ARGV[4])
local min = ARGV[2]
local keys = {}
while true do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[3], 'LIMIT', 0, limit + 1)
  for _, member in ipairs(batch) do
    if redis.call('EXISTS', ARGV[1] .. member) == 1 then
      if #keys == limit then return {1, keys} end
      keys[#keys + 1] = member
    else
      redis.call('ZREM', KEYS[1], member)
      redis.call('ZREM', KEYS[2], member)
    end
    min = '(' .. member
  end
  if #batch <= limit then return {0, keys} end
end",
    )
});

/// A connection to one Redis server (it reconnects by itself).
pub(crate) struct RedisBackend {
    connection: ConnectionManager,
}

/// The Redis key names of one namespace.
struct Names {
    /// `shanhai:kv:{len}:{ns}:`, to which a key is appended.
    value_prefix: Vec<u8>,
    index: Vec<u8>,
    expiry: Vec<u8>,
}

impl Names {
    fn new(namespace: &str) -> Self {
        let tag = format!("{}:{namespace}", namespace.len());
        Self {
            value_prefix: format!("shanhai:kv:{tag}:").into_bytes(),
            index: format!("shanhai:idx:{tag}").into_bytes(),
            expiry: format!("shanhai:exp:{tag}").into_bytes(),
        }
    }

    fn value(&self, key: &str) -> Vec<u8> {
        [self.value_prefix.as_slice(), key.as_bytes()].concat()
    }
}

/// Connection-level failures are [`KvError::Unavailable`]; anything else
/// Redis says is unexpected for the commands used here.
fn failure(error: RedisError) -> KvError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        KvError::Unavailable(format!("Redis: {error}"))
    } else {
        KvError::Internal(format!("Redis: {error}"))
    }
}

fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map(|ttl| ttl_ms(ttl).to_string()).unwrap_or_default()
}

impl RedisBackend {
    /// Connects and checks that the server answers a PING.
    pub(crate) async fn connect(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url)
            .map_err(|error| KvError::Unavailable(format!("invalid Redis URL: {error}")))?;
        // The address, not the URL, goes into messages: the URL may hold a password.
        let address = client.get_connection_info().addr().to_string();
        let unreachable = |detail: String| {
            KvError::Unavailable(format!("cannot reach Redis at {address}: {detail}"))
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let connect = async {
            let mut connection = ConnectionManager::new_with_config(client, config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok::<_, RedisError>(connection)
        };
        let connection = tokio::time::timeout(CONNECT_TIMEOUT * 4, connect)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|error| unreachable(error.to_string()))?;
        Ok(Self { connection })
    }

    /// The value and the TTL it has left, read in one round trip.
    pub(crate) async fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Option<Duration>)>, KvError> {
        let key = Names::new(namespace).value(key);
        let (value, ttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(failure)?;
        // PTTL is -1 for no TTL, -2 if the key expired between the two commands.
        let left = match ttl {
            -1 => None,
            ttl => Some(Duration::from_millis(u64::try_from(ttl).unwrap_or(0))),
        };
        Ok(value.map(|value| (Bytes::from(value), left)))
    }

    pub(crate) async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let names = Names::new(namespace);
        SET.key(names.value(key))
            .key(&names.index)
            .key(&names.expiry)
            .arg(&names.value_prefix)
            .arg(key)
            .arg(value)
            .arg(ttl_arg(ttl))
            .invoke_async::<i64>(&mut self.connection.clone())
            .await
            .map_err(failure)?;
        Ok(())
    }

    pub(crate) async fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let names = Names::new(namespace);
        let deleted = DELETE
            .key(names.value(key))
            .key(&names.index)
            .key(&names.expiry)
            .arg(key)
            .invoke_async::<i64>(&mut self.connection.clone())
            .await
            .map_err(failure)?;
        Ok(deleted > 0)
    }

    pub(crate) async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let names = Names::new(namespace);
        let swapped = COMPARE_AND_SWAP
            .key(names.value(key))
            .key(&names.index)
            .key(&names.expiry)
            .arg(&names.value_prefix)
            .arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl_arg(ttl))
            .invoke_async::<i64>(&mut self.connection.clone())
            .await
            .map_err(failure)?;
        Ok(swapped == 1)
    }

    pub(crate) async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, KvError> {
        let names = Names::new(namespace);
        let sum = INCREMENT
            .key(names.value(key))
            .key(&names.index)
            .key(&names.expiry)
            .arg(&names.value_prefix)
            .arg(key)
            .arg(delta)
            .invoke_async::<Option<String>>(&mut self.connection.clone())
            .await
            .map_err(failure)?
            .ok_or(KvError::NotANumber)?;
        sum.parse()
            .map_err(|_| KvError::Internal(format!("INCRBY left {sum:?}")))
    }

    pub(crate) async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let names = Names::new(namespace);
        let min = match cursor {
            Some(cursor) => [b"(", cursor].concat(),
            None if prefix.is_empty() => b"-".to_vec(),
            None => [b"[", prefix.as_bytes()].concat(),
        };
        // No UTF-8 key contains the byte 0xFF, so every key starting with
        // `prefix` sorts below `prefix` followed by it.
        let max = if prefix.is_empty() {
            b"+".to_vec()
        } else {
            [b"(", prefix.as_bytes(), b"\xff"].concat()
        };
        let (more, members): (i64, Vec<Vec<u8>>) = LIST
            .key(&names.index)
            .key(&names.expiry)
            .arg(&names.value_prefix)
            .arg(min)
            .arg(max)
            .arg(limit)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failure)?;
        let keys = members
            .into_iter()
            .map(|member| {
                String::from_utf8(member)
                    .map_err(|_| KvError::Internal("an indexed key is not UTF-8".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more == 1 {
            keys.last().map(|key| key.as_bytes().to_vec())
        } else {
            None
        };
        Ok(KeyPage { keys, next })
    }
}
