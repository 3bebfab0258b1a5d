//! SQL on either backend: one statement text, one way to bind values and read rows, run on an
//! SQLite connection or a PostgreSQL session.
//!
//! Business code is written once against [`Db`]. Statement texts use SQLite's numbered
//! placeholders (`?1`, `?2`, …), which are turned into PostgreSQL's (`$1`, `$2`, …) once per
//! text and session; everything else in a text must mean the same on both (the tables are the
//! same: `pg_schema.rs`, tested by `postgres_schema_is_sqlites`). Where the two dialects differ,
//! [`Db::is_postgres`] picks the text. Values are bound as one of four kinds ([`Value`]) and
//! read back by column index ([`Row`], over [`Columns`]), so a row is parsed by the same
//! function whichever backend it came from.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use postgres::types::{IsNull, ToSql, Type};
use postgres::Statement;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::secrets::{self, Plain, Secrets};
use crate::StoreError;

/// A result row of either backend, read by column index: the ledger's rows are parsed by one
/// set of functions whether they come from SQLite or PostgreSQL (`pg.rs`).
pub(crate) trait Columns {
    /// A BLOB / BYTEA column.
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// An INTEGER / BIGINT column.
    fn int(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// A TEXT column.
    fn text(&self, index: usize) -> Result<Option<String>, StoreError>;
}

impl Columns for rusqlite::Row<'_> {
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(index)?)
    }
    fn int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }
    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'v> {
    Null,
    Int(i64),
    Text(&'v str),
    Bytes(&'v [u8]),
}

/// What can be bound to a placeholder.
pub(crate) trait Arg {
    fn value(&self) -> Value<'_>;
}

impl Arg for i64 {
    fn value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl Arg for i32 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Arg for u16 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Arg for u32 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Arg for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Bytes(self)
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Bytes(self)
    }
}

impl<const N: usize> Arg for [u8; N] {
    fn value(&self) -> Value<'_> {
        Value::Bytes(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
}

/// The values of a statement's placeholders, in order: `args![a, b, c]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$(&$value as &dyn $crate::sql::Arg),*] as &[&dyn $crate::sql::Arg]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(value) => ValueRef::Integer(value),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Bytes(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            // The server infers a placeholder's type from the statement: a BIGINT column's,
            // or a narrower one where an expression wants it (an INTEGER function argument).
            Value::Int(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
                Type::BOOL => (value != 0).to_sql(ty, out),
                _ => Err(format!("an integer bound where the statement wants {ty}").into()),
            },
            Value::Text(text) if *ty != Type::BYTEA && <&str as ToSql>::accepts(ty) => {
                text.to_sql(ty, out)
            }
            Value::Bytes(bytes) if *ty == Type::BYTEA => bytes.to_sql(ty, out),
            Value::Text(_) => Err(format!("text bound where the statement wants {ty}").into()),
            Value::Bytes(_) => Err(format!("bytes bound where the statement wants {ty}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
            Type::BYTEA,
        ]
        .contains(ty)
    }

    postgres::types::to_sql_checked!();
}

/// A bound value owned, for a statement sent later (`pg_pipe.rs`).
#[derive(Debug)]
pub(crate) enum Owned {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Owned {
    fn of(value: Value<'_>) -> Owned {
        match value {
            Value::Null => Owned::Null,
            Value::Int(value) => Owned::Int(value),
            Value::Text(text) => Owned::Text(text.to_owned()),
            Value::Bytes(bytes) => Owned::Bytes(bytes.to_vec()),
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Owned::Null => Value::Null,
            Owned::Int(value) => Value::Int(*value),
            Owned::Text(text) => Value::Text(text),
            Owned::Bytes(bytes) => Value::Bytes(bytes),
        }
    }
}

impl ToSql for Owned {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.value().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <Value<'_> as ToSql>::accepts(ty)
    }

    postgres::types::to_sql_checked!();
}

/// SQLite's numbered placeholders (`?1`) as PostgreSQL's (`$1`); string literals, quoted names
/// and comments (`--` and `/* */`) are left as they are.
pub(crate) fn postgres_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                out.extend(chars.next());
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// A PostgreSQL session statements run on: a transaction or a client, with the statements it
/// has prepared. Object-safe, so [`Db`] carries no session type.
pub(crate) trait PgSession {
    /// The prepared form of `sql` (in SQLite's placeholders), prepared once per session.
    fn prepared(&mut self, sql: &str) -> Result<Arc<Prepared>, StoreError>;
    /// The keys that seal and unseal stored secrets.
    fn secrets(&self) -> Arc<Secrets>;
    fn query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
    fn execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>;
    /// Runs statements without parameters or results (savepoints).
    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error>;
    /// [`PgSession::batch`], sent later on the writer's pipelined connection.
    fn batch_later(&mut self, sql: &str) -> Result<(), postgres::Error>;
    /// Inserts a row with `prepared` (an insert of one row): at once, or on the writer's
    /// pipelined connection later, together with the other rows of that insert queued with it.
    fn insert_later(&mut self, prepared: &Prepared, row: Vec<Owned>) -> Result<(), StoreError>;
    /// Whether a statement failed in this session.
    fn failed(&self) -> bool;
}

/// A value bound to a statement sent later (`pg_pipe.rs`).
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// The values of a statement sent later: `params![a, b, c]`.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        vec![$(Box::new($value) as $crate::sql::Param),*]
    };
}
pub(crate) use params;

/// A row's values as the params of a statement sent later.
pub(crate) fn boxed(row: Vec<Owned>) -> Vec<Param> {
    row.into_iter()
        .map(|value| Box::new(value) as Param)
        .collect()
}

/// `params` as a statement binds them.
pub(crate) fn bound(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| &**value as &(dyn ToSql + Sync))
        .collect()
}

/// A PostgreSQL connection a [`Session`] runs statements on: the synchronous client, or the
/// writer's pipelined connection (`pg_pipe.rs`), which queues what is sent "later".
pub(crate) trait Link {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error>;
    fn query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
    fn execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>;
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error>;
    fn execute_later(
        &mut self,
        statement: &Statement,
        params: Vec<Param>,
    ) -> Result<(), postgres::Error> {
        self.execute(statement, &bound(&params)).map(drop)
    }
    fn batch_later(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.batch_execute(sql)
    }
    /// Whether [`Link::insert_later`] sends rows of one insert together (then it wants the
    /// insert's form for many rows).
    fn merges_rows(&self) -> bool {
        false
    }
    /// Inserts `row` with `one` (whose text is `text`), at once or later; the writer's
    /// pipelined connection sends the rows of one insert queued together as one statement,
    /// with `many` (see `pg_pipe.rs`).
    fn insert_later(
        &mut self,
        text: &str,
        one: &Statement,
        many: Option<&Statement>,
        row: Vec<Owned>,
    ) -> Result<(), postgres::Error> {
        let _ = (text, many);
        self.execute_later(one, boxed(row))
    }
}

impl Link for postgres::Client {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        postgres::Client::prepare(self, sql)
    }
    fn query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        postgres::Client::query(self, statement, params)
    }
    fn execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        postgres::Client::execute(self, statement, params)
    }
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        postgres::Client::batch_execute(self, sql)
    }
}

/// A statement prepared on PostgreSQL, with where its stored secrets are: SQLite seals and
/// unseals them with SQL functions (`secrets.rs`); PostgreSQL has none, so a text's
/// `seal(?N)` becomes a plain placeholder whose value is sealed here before it is bound, and
/// its `unseal(column)` a plain column unsealed here when it is read.
pub(crate) struct Prepared {
    pub(crate) statement: Statement,
    /// Parameters (0-based) to seal before binding.
    sealed: Vec<usize>,
    /// Per result column: whether to unseal it.
    unsealed: Vec<bool>,
    /// The text on PostgreSQL.
    text: String,
    /// For an insert of one row, once asked for: its form for many rows, if it has one
    /// ([`rows_text`]).
    many: OnceLock<Option<Statement>>,
}

/// Prepared statements of one PostgreSQL connection, by their SQLite text. Dropped with the
/// connection: a statement belongs to the session that prepared it.
pub(crate) type StatementCache = HashMap<String, Arc<Prepared>>;

/// The form for many rows of `text`, an insert of one row on PostgreSQL (`INSERT INTO t (…)
/// VALUES (…)`, perhaps `ON CONFLICT DO NOTHING`) whose parameters have the types `params`:
/// the same insert from `UNNEST` of one array per parameter, each value expression taking its
/// parameters from the arrays' row. `None` for any other text (another conflict clause could
/// meet its own rows; quotes and comments are not parsed), or for a parameter of a type not
/// bound as arrays here.
pub(crate) fn rows_text(text: &str, params: &[Type]) -> Option<String> {
    // The arrays hold what a value binds as (`Value`), of a type that has an array.
    let bindable = |ty: &Type| *ty != Type::UNKNOWN && <Value<'_> as ToSql>::accepts(ty);
    if params.is_empty() || !params.iter().all(bindable) {
        return None;
    }
    let rest = text.trim().strip_prefix("INSERT INTO ")?;
    let (target, values) = rest.split_once(" VALUES (")?;
    let (values, tail) = values.rsplit_once(')')?;
    let tail = match tail.trim() {
        "" => "",
        "ON CONFLICT DO NOTHING" => " ON CONFLICT DO NOTHING",
        _ => return None,
    };
    if ["'", "\"", "--", "/*", ";"]
        .iter()
        .any(|word| values.contains(word) || target.contains(word))
    {
        return None;
    }
    // The parentheses of the values must close only at the end.
    let mut depth = 0usize;
    for c in values.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let mut select = String::with_capacity(values.len() + 16);
    let mut chars = values.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            select.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(digit) = chars.next_if(char::is_ascii_digit) {
            digits.push(digit);
        }
        let n: usize = digits.parse().ok()?;
        if n == 0 || n > params.len() {
            return None;
        }
        select.push_str(&format!("u.c{n}"));
    }
    let arrays: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(index, ty)| format!("${}::{}[]", index + 1, ty.name()))
        .collect();
    let columns: Vec<String> = (1..=params.len()).map(|n| format!("c{n}")).collect();
    Some(format!(
        "INSERT INTO {target} SELECT {select} FROM UNNEST({}) AS u({}){tail}",
        arrays.join(", "),
        columns.join(", ")
    ))
}

/// The name a selected `unseal(column)` gets on PostgreSQL.
const UNSEALED: &str = "farthing_unsealed";

/// `seal(?N)` and `unseal(column)` taken out of an SQLite text for PostgreSQL: the text with
/// plain placeholders and columns (those named [`UNSEALED`]), and the 0-based parameters to
/// seal. Other uses of the two functions are left as they are (and fail on PostgreSQL).
pub(crate) fn secret_calls(sql: &str) -> (String, Vec<usize>) {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len());
    let mut sealed = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find("seal(") {
        let unseal = rest[..at].ends_with("un");
        let start = if unseal { at - 2 } else { at };
        let open = at + "seal(".len();
        let close = rest[open..].find(')').map(|end| open + end);
        let whole_word = !rest[..start].ends_with(ident);
        match close {
            Some(close) if whole_word => {
                let inner = &rest[open..close];
                let placeholder = inner
                    .strip_prefix('?')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n > 0);
                if unseal && !inner.is_empty() && inner.chars().all(|c| ident(c) || c == '.') {
                    out.push_str(&rest[..start]);
                    out.push_str(inner);
                    out.push_str(" AS ");
                    out.push_str(UNSEALED);
                } else if let (false, Some(n)) = (unseal, placeholder) {
                    out.push_str(&rest[..start]);
                    out.push_str(inner);
                    sealed.push(n - 1);
                } else {
                    out.push_str(&rest[..=close]);
                }
                rest = &rest[close + 1..];
            }
            _ => {
                out.push_str(&rest[..open]);
                rest = &rest[open..];
            }
        }
    }
    out.push_str(rest);
    (out, sealed)
}

/// A PostgreSQL client or transaction with its connection's statement cache.
pub(crate) struct Session<'s, C> {
    pub(crate) client: &'s mut C,
    pub(crate) cache: &'s mut StatementCache,
    pub(crate) secrets: Arc<Secrets>,
    /// Whether a statement failed in this session (which leaves a transaction aborted up to
    /// its latest savepoint).
    pub(crate) failed: bool,
}

impl<C> Session<'_, C> {
    /// Notes a failed statement on the way out.
    fn noted<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        self.failed |= result.is_err();
        result
    }
}

impl<C: Link> PgSession for Session<'_, C> {
    fn prepared(&mut self, sql: &str) -> Result<Arc<Prepared>, StoreError> {
        if let Some(prepared) = self.cache.get(sql) {
            return Ok(Arc::clone(prepared));
        }
        let (text, sealed) = secret_calls(sql);
        let text = postgres_text(&text);
        let prepared = self.client.prepare(&text);
        let statement = self.noted(prepared)?;
        let unsealed = statement
            .columns()
            .iter()
            .map(|column| column.name() == UNSEALED)
            .collect();
        let prepared = Arc::new(Prepared {
            statement,
            sealed,
            unsealed,
            text,
            many: OnceLock::new(),
        });
        self.cache.insert(sql.to_owned(), Arc::clone(&prepared));
        Ok(prepared)
    }

    fn secrets(&self) -> Arc<Secrets> {
        Arc::clone(&self.secrets)
    }

    fn query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let rows = self.client.query(statement, params);
        self.noted(rows)
    }

    fn execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let count = self.client.execute(statement, params);
        self.noted(count)
    }

    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let done = self.client.batch_execute(sql);
        self.noted(done)
    }

    fn batch_later(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let done = self.client.batch_later(sql);
        self.noted(done)
    }

    fn insert_later(&mut self, prepared: &Prepared, row: Vec<Owned>) -> Result<(), StoreError> {
        let many = match prepared.many.get() {
            Some(many) => many.clone(),
            None if self.client.merges_rows() => {
                let many = match rows_text(&prepared.text, prepared.statement.params()) {
                    Some(text) => {
                        let made = self.client.prepare(&text);
                        Some(self.noted(made)?)
                    }
                    None => None,
                };
                let _ = prepared.many.set(many.clone());
                many
            }
            None => None,
        };
        let done =
            self.client
                .insert_later(&prepared.text, &prepared.statement, many.as_ref(), row);
        Ok(self.noted(done)?)
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// Where statements run: an SQLite connection, or a PostgreSQL session (borrowed mutably by
/// one statement at a time).
#[derive(Clone, Copy)]
pub(crate) enum Db<'a> {
    Sqlite(&'a Connection),
    Postgres(&'a RefCell<dyn PgSession + 'a>),
}

/// A result row of either backend.
pub(crate) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row, with the statement that read it (which columns to unseal) and the keys.
    Postgres(&'r postgres::Row, &'r Prepared, &'r Secrets),
}

impl Row<'_> {
    /// Column `index` of a PostgreSQL row, unsealed, when the statement selected it with
    /// `unseal(…)`.
    fn unsealed(&self, index: usize) -> Result<Option<Plain>, StoreError> {
        let Row::Postgres(row, prepared, secrets) = self else {
            return Ok(None);
        };
        if !prepared.unsealed.get(index).copied().unwrap_or(false) {
            return Ok(None);
        }
        let stored = if row.columns()[index].type_() == &Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)?
                .map_or(Plain::Null, Plain::Bytes)
        } else {
            row.try_get::<_, Option<String>>(index)?
                .map_or(Plain::Null, Plain::Text)
        };
        Ok(Some(secrets::unseal_value(secrets, stored)?))
    }
}

impl Row<'_> {
    /// A secret column selected with `unseal(…)`, as it was given to `seal` (text or bytes).
    pub(crate) fn secret(&self, index: usize) -> Result<Plain, StoreError> {
        if let Some(plain) = self.unsealed(index)? {
            return Ok(plain);
        }
        match self {
            Row::Sqlite(row) => Ok(match row.get_ref(index)? {
                rusqlite::types::ValueRef::Null => Plain::Null,
                rusqlite::types::ValueRef::Blob(bytes) => Plain::Bytes(bytes.to_vec()),
                rusqlite::types::ValueRef::Text(text) => Plain::Text(
                    String::from_utf8(text.to_vec())
                        .map_err(|_| StoreError::Corrupt("a secret is not UTF-8".into()))?,
                ),
                _ => return Err(StoreError::Corrupt("a secret is a number".into())),
            }),
            Row::Postgres(..) => Err(StoreError::Corrupt(
                "a secret column was read without unseal(…)".into(),
            )),
        }
    }
}

impl Columns for Row<'_> {
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.unsealed(index)? {
            Some(Plain::Null) => return Ok(None),
            Some(Plain::Bytes(bytes)) => return Ok(Some(bytes)),
            Some(Plain::Text(text)) => return Ok(Some(text.into_bytes())),
            None => {}
        }
        match self {
            Row::Sqlite(row) => row.bytes(index),
            Row::Postgres(row, ..) => row.bytes(index),
        }
    }
    fn int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self {
            Row::Sqlite(row) => row.int(index),
            Row::Postgres(row, ..) => row.int(index),
        }
    }
    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.unsealed(index)? {
            Some(Plain::Null) => return Ok(None),
            Some(Plain::Text(text)) => return Ok(Some(text)),
            Some(Plain::Bytes(bytes)) => {
                return String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt("an unsealed secret is not text".into()))
            }
            None => {}
        }
        match self {
            Row::Sqlite(row) => row.text(index),
            Row::Postgres(row, ..) => row.text(index),
        }
    }
}

/// A column value [`Row::get`] reads.
pub(crate) trait FromColumn: Sized {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError>;
}

fn not_null<T>(value: Option<T>, index: usize) -> Result<T, StoreError> {
    value.ok_or_else(|| StoreError::Corrupt(format!("column {index} is NULL")))
}

/// Integer columns read into narrower or unsigned types, refusing values they cannot hold.
macro_rules! narrow_ints {
    ($($ty:ty),*) => {$(
        impl FromColumn for $ty {
            fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
                let value = not_null(row.int(index)?, index)?;
                <$ty>::try_from(value).map_err(|_| {
                    StoreError::Corrupt(format!("column {index} holds {value}, out of range"))
                })
            }
        }
    )*};
}
narrow_ints!(u16, u32, u64, i32);

impl FromColumn for bool {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        Ok(not_null(row.int(index)?, index)? != 0)
    }
}

impl FromColumn for Option<i64> {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        row.int(index)
    }
}

impl FromColumn for i64 {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        not_null(row.int(index)?, index)
    }
}

impl FromColumn for Option<String> {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        row.text(index)
    }
}

impl FromColumn for String {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        not_null(row.text(index)?, index)
    }
}

impl FromColumn for Option<Vec<u8>> {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        row.bytes(index)
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(row: &Row<'_>, index: usize) -> Result<Self, StoreError> {
        not_null(row.bytes(index)?, index)
    }
}

/// A column index (as rusqlite's `Row::get` takes one, so that code reads the same).
pub(crate) trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row<'_> {
    /// Column `index` as `T`.
    pub(crate) fn get<I: ColumnIndex, T: FromColumn>(&self, index: I) -> Result<T, StoreError> {
        T::from_column(self, index.index())
    }
}

/// The arguments as SQLite binds them, without collecting them first.
fn sqlite_params<'v>(
    args: &'v [&'v dyn Arg],
) -> rusqlite::ParamsFromIter<impl Iterator<Item = Value<'v>>> {
    rusqlite::params_from_iter(args.iter().map(|arg| arg.value()))
}

fn pg_params<'v>(values: &'v [Value<'v>]) -> Vec<&'v (dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// The sealed form of the parameters `prepared` seals, in its order.
fn seal_params(
    prepared: &Prepared,
    secrets: &Secrets,
    args: &[&dyn Arg],
) -> Result<Vec<Plain>, StoreError> {
    prepared
        .sealed
        .iter()
        .map(|&index| {
            let plain = match args.get(index).map(|arg| arg.value()) {
                None | Some(Value::Null) => Plain::Null,
                Some(Value::Text(text)) => Plain::Text(text.to_owned()),
                Some(Value::Bytes(bytes)) => Plain::Bytes(bytes.to_vec()),
                Some(Value::Int(_)) => {
                    return Err(StoreError::Secrets(
                        "only text and blobs are sealed".to_owned(),
                    ))
                }
            };
            Ok(secrets::seal_value(secrets, &plain)?)
        })
        .collect()
}

/// The values to bind on PostgreSQL: `args`, with the sealed ones in place (as text, or as
/// bytes where the column is BYTEA).
fn pg_values<'v>(
    prepared: &Prepared,
    args: &'v [&'v dyn Arg],
    sealed: &'v [Plain],
) -> Vec<Value<'v>> {
    let mut values: Vec<Value<'v>> = args.iter().map(|arg| arg.value()).collect();
    let types = prepared.statement.params();
    for (&index, plain) in prepared.sealed.iter().zip(sealed) {
        let bytea = types.get(index) == Some(&Type::BYTEA);
        if let Some(slot) = values.get_mut(index) {
            *slot = match plain {
                Plain::Null => Value::Null,
                Plain::Text(text) if bytea => Value::Bytes(text.as_bytes()),
                Plain::Text(text) => Value::Text(text),
                Plain::Bytes(bytes) => Value::Bytes(bytes),
            };
        }
    }
    values
}

impl<'a> Db<'a> {
    /// Whether statements run on PostgreSQL (for the few texts that differ).
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs a statement; how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize, StoreError> {
        match self {
            Db::Sqlite(connection) => Ok(connection
                .prepare_cached(sql)?
                .execute(sqlite_params(args))?),
            Db::Postgres(session) => {
                let mut session = session.borrow_mut();
                let prepared = session.prepared(sql)?;
                let sealed = seal_params(&prepared, &session.secrets(), args)?;
                let values = pg_values(&prepared, args, &sealed);
                let changed = session.execute(&prepared.statement, &pg_params(&values))?;
                usize::try_from(changed)
                    .map_err(|_| StoreError::Corrupt("a row count beyond usize".into()))
            }
        }
    }

    /// Calls `each` with the rows of a query in order until it returns `false` or the rows end.
    pub(crate) fn each(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut each: impl FnMut(&Row<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                let mut rows = statement.query(sqlite_params(args))?;
                while let Some(row) = rows.next()? {
                    if !each(&Row::Sqlite(row))? {
                        break;
                    }
                }
            }
            Db::Postgres(session) => {
                let (rows, prepared, secrets) = {
                    let mut session = session.borrow_mut();
                    let prepared = session.prepared(sql)?;
                    let secrets = session.secrets();
                    let sealed = seal_params(&prepared, &secrets, args)?;
                    let values = pg_values(&prepared, args, &sealed);
                    let rows = session.query(&prepared.statement, &pg_params(&values))?;
                    (rows, prepared, secrets)
                };
                for row in &rows {
                    if !each(&Row::Postgres(row, &prepared, &secrets))? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// At most the first `limit` rows of a query, each read by `read`. On PostgreSQL the text
    /// says how many (the server sends every row a statement finds); on SQLite reading stops
    /// (a bound `LIMIT` makes SQLite re-prepare the statement at every execution, and its index
    /// walk is lazy, so stopping costs the same). Each limit is its own statement there.
    pub(crate) fn first_rows<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        limit: usize,
        mut read: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let limited;
        let sql = if self.is_postgres() {
            limited = format!("{sql} LIMIT {limit}");
            &limited
        } else {
            sql
        };
        self.each(sql, args, |row| {
            out.push(read(row)?);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Every row of a query, each read by `read`.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut read: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, args, |row| {
            out.push(read(row)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query, if any, read by `read`.
    pub(crate) fn row<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        read: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut read = Some(read);
        let mut out = None;
        self.each(sql, args, |row| {
            if let Some(read) = read.take() {
                out = Some(read(row)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// Whether a query finds any row.
    pub(crate) fn exists(&self, sql: &str, args: &[&dyn Arg]) -> Result<bool, StoreError> {
        Ok(self.row(sql, args, |_| Ok(()))?.is_some())
    }

    /// Stores a row of `table` (its `columns`, comma-separated, bound in order), replacing the
    /// row with the same `key` column: SQLite's `INSERT OR REPLACE`, PostgreSQL's
    /// `ON CONFLICT (key) DO UPDATE`.
    pub(crate) fn replace(
        &self,
        table: &str,
        columns: &str,
        key: &str,
        args: &[&dyn Arg],
    ) -> Result<usize, StoreError> {
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        let values: Vec<String> = (1..=names.len()).map(|n| format!("?{n}")).collect();
        let values = values.join(", ");
        let sql = if self.is_postgres() {
            let set: Vec<String> = names
                .iter()
                .filter(|name| **name != key)
                .map(|name| format!("{name} = EXCLUDED.{name}"))
                .collect();
            format!(
                "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {}",
                set.join(", ")
            )
        } else {
            format!("INSERT OR REPLACE INTO {table} ({columns}) VALUES ({values})")
        };
        self.execute(&sql, args)
    }

    /// Inserts a row whose count nobody needs, and which cannot fail on valid data (a fresh
    /// id, checked values). On PostgreSQL the writer sends it with its next statement that
    /// waits for an answer, in one round trip (`pg_pipe.rs`); should it fail after all, its
    /// whole batch fails (nothing of it is stored).
    pub(crate) fn insert(&self, sql: &str, args: &[&dyn Arg]) -> Result<(), StoreError> {
        // PostgreSQL refuses a NUL in text: that insert fails where its own job sees it.
        let nul = |arg: &&dyn Arg| matches!(arg.value(), Value::Text(text) if text.contains('\0'));
        match self {
            Db::Sqlite(_) => self.execute(sql, args).map(drop),
            Db::Postgres(_) if args.iter().any(nul) => self.execute(sql, args).map(drop),
            Db::Postgres(session) => {
                let mut session = session.borrow_mut();
                let prepared = session.prepared(sql)?;
                let sealed = seal_params(&prepared, &session.secrets(), args)?;
                let row = pg_values(&prepared, args, &sealed)
                    .into_iter()
                    .map(Owned::of)
                    .collect();
                session.insert_later(&prepared, row)
            }
        }
    }

    /// [`Db::run`] for a savepoint command that cannot fail in a sound transaction: on
    /// PostgreSQL the writer sends it with its next statement, as [`Db::insert`]. After a
    /// failed statement (the transaction may be aborted) it runs at once, its failure its own.
    pub(crate) fn run_later(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Postgres(session) if !session.borrow().failed() => {
                Ok(session.borrow_mut().batch_later(sql)?)
            }
            _ => self.run(sql),
        }
    }

    /// Runs a statement without parameters or results (a savepoint), cached on SQLite.
    pub(crate) fn run(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(connection) => {
                connection.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Db::Postgres(session) => Ok(session.borrow_mut().batch(sql)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{postgres_text, rows_text, secret_calls};
    use postgres::types::Type;

    #[test]
    fn an_insert_of_one_row_has_a_form_for_many_and_nothing_else_does() {
        assert_eq!(
            rows_text(
                "INSERT INTO t (a, b, c) VALUES ($1, $2, coalesce($3, 0) + $1)",
                &[Type::BYTEA, Type::TEXT, Type::INT8]
            )
            .as_deref(),
            Some(
                "INSERT INTO t (a, b, c) SELECT u.c1, u.c2, coalesce(u.c3, 0) + u.c1 \
                 FROM UNNEST($1::bytea[], $2::text[], $3::int8[]) AS u(c1, c2, c3)"
            )
        );
        assert_eq!(
            rows_text(
                "INSERT INTO q (n, e) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[Type::INT8, Type::BYTEA]
            )
            .as_deref(),
            Some(
                "INSERT INTO q (n, e) SELECT u.c1, u.c2 FROM UNNEST($1::int8[], $2::bytea[]) \
                 AS u(c1, c2) ON CONFLICT DO NOTHING"
            )
        );
        let two = [Type::INT8, Type::INT8];
        for text in [
            // A conflict clause that could meet the statement's own rows twice.
            "INSERT INTO q (n, e) VALUES ($1, $2) ON CONFLICT (n) DO UPDATE SET e = $2",
            "INSERT INTO q (n, e) VALUES ($1, $2) ON CONFLICT (n) DO NOTHING",
            "INSERT INTO q (n, e) VALUES ($1, 'x') RETURNING n",
            "INSERT INTO q (n, e) VALUES ($1, $2), ($2, $1)",
            "INSERT INTO q (n, e) VALUES ($1, $3)",
            "INSERT INTO q (n, e) VALUES ($0, $1)",
            "INSERT INTO q (n, e) SELECT $1, $2",
            "UPDATE q SET n = $1 WHERE e = $2",
            "INSERT INTO q (n, e) VALUES ($1, $2 /* ) */)",
        ] {
            assert_eq!(rows_text(text, &two), None, "{text}");
        }
        assert_eq!(
            rows_text("INSERT INTO q (n) VALUES ($1)", &[Type::JSONB]),
            None,
            "a type not bound as arrays here"
        );
    }

    #[test]
    fn placeholders_become_postgres_ones_and_nothing_else_changes() {
        assert_eq!(
            postgres_text("SELECT a FROM t WHERE a = ?1 AND b IN (?2, ?12)"),
            "SELECT a FROM t WHERE a = $1 AND b IN ($2, $12)"
        );
        assert_eq!(
            postgres_text("SELECT '?1', \"?2\" -- ?3\n FROM t WHERE x = ?4"),
            "SELECT '?1', \"?2\" -- ?3\n FROM t WHERE x = $4"
        );
        assert_eq!(
            postgres_text("SELECT /* it's ?1 */ a FROM t WHERE b = ?2 /**/ AND c = ?3"),
            "SELECT /* it's ?1 */ a FROM t WHERE b = $2 /**/ AND c = $3"
        );
        assert_eq!(postgres_text("/*/ ?1 */ ?2"), "/*/ ?1 */ $2");
        assert_eq!(postgres_text("SELECT ? "), "SELECT ? ");
    }

    #[test]
    fn secret_functions_become_plain_columns_and_placeholders() {
        assert_eq!(
            secret_calls("SELECT id, unseal(token), x, unseal(t.secret) FROM b WHERE id = ?1"),
            (
                "SELECT id, token AS farthing_unsealed, x, t.secret AS farthing_unsealed \
                 FROM b WHERE id = ?1"
                    .to_owned(),
                vec![]
            )
        );
        assert_eq!(
            secret_calls("INSERT INTO b (a, t, w) VALUES (?1, seal(?2), seal(?10))"),
            (
                "INSERT INTO b (a, t, w) VALUES (?1, ?2, ?10)".to_owned(),
                vec![1, 9]
            )
        );
        // Anything else is left alone.
        for text in [
            "UPDATE b SET t = seal(unseal(t))",
            "SELECT reseal(x), seal(?0), seal(x) FROM b",
            "SELECT unseal(x || y) FROM b",
            "SELECT 1 FROM b WHERE y = seal(",
        ] {
            let (out, sealed) = secret_calls(text);
            assert!(sealed.is_empty(), "{text}");
            assert!(out.contains("seal("), "{text} -> {out}");
        }
    }
}
