"""SQLite persistence of the sandbox (stdlib ``sqlite3``, WAL mode).

Most objects are stored as JSON documents next to a few indexed columns. Every write goes
through :meth:`Store.tx`, which serialises writers with one lock (SQLite has one writer anyway)
so that multi-step operations such as "check duplicate, then insert" are atomic.
"""
import contextlib
import json
import logging
import os
import sqlite3
import threading

_logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS challenges (ref TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    ref TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, context TEXT NOT NULL, created TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_ops (
    ref TEXT PRIMARY KEY, context TEXT NOT NULL, created TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    ref TEXT PRIMARY KEY, kind TEXT NOT NULL, context TEXT NOT NULL, created TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_ctx ON sessions (context, kind, created);
CREATE TABLE IF NOT EXISTS session_invoices (
    ref TEXT PRIMARY KEY, session_ref TEXT NOT NULL, ordinal INTEGER NOT NULL, failed INTEGER NOT NULL DEFAULT 0,
    invoice_hash TEXT, ready_at REAL NOT NULL DEFAULT 0, accepted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS session_invoices_ord ON session_invoices (session_ref, ordinal);
CREATE INDEX IF NOT EXISTS session_invoices_hash ON session_invoices (invoice_hash);
CREATE TABLE IF NOT EXISTS invoices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ksef_number TEXT UNIQUE NOT NULL,
    seller_nip TEXT NOT NULL, kind TEXT NOT NULL, invoice_number TEXT NOT NULL,
    invoice_hash TEXT NOT NULL, issue_date TEXT NOT NULL, invoicing_date TEXT NOT NULL,
    permanent_storage_date TEXT NOT NULL,
    session_ref TEXT, invoice_ref TEXT, hash_of_corrected TEXT,
    meta TEXT NOT NULL, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS invoices_dup ON invoices (seller_nip, kind, invoice_number);
CREATE INDEX IF NOT EXISTS invoices_hash ON invoices (invoice_hash);
CREATE INDEX IF NOT EXISTS invoices_corr ON invoices (hash_of_corrected);
CREATE INDEX IF NOT EXISTS invoices_ref ON invoices (invoice_ref);
CREATE INDEX IF NOT EXISTS invoices_session ON invoices (session_ref);
CREATE TABLE IF NOT EXISTS invoice_xml (id INTEGER PRIMARY KEY, xml BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS parties (invoice_id INTEGER NOT NULL, subject_type TEXT NOT NULL, ident TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS parties_idx ON parties (subject_type, ident, invoice_id);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    ref TEXT PRIMARY KEY, context TEXT NOT NULL, created TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    context TEXT NOT NULL, subject TEXT NOT NULL, permission TEXT NOT NULL, created TEXT,
    PRIMARY KEY (context, subject, permission));
"""


def dumps(doc):
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class Store:
    """Thread-safe access to the sandbox database (one connection per thread)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.lock = threading.RLock()
        self._local = threading.local()
        self._all = []
        self._all_lock = threading.Lock()
        conn = self.conn()
        conn.executescript(SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(grants)")}
        if "created" not in columns:  # data directories of the first sandbox version
            conn.execute("ALTER TABLE grants ADD COLUMN created TEXT")

    # -- connections --------------------------------------------------------------------
    def conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._local.depth = 0
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self):
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            self._all = []
        self._local = threading.local()

    @contextlib.contextmanager
    def tx(self):
        """Serialised write transaction (re-entrant)."""
        with self.lock:
            conn = self.conn()
            if self._local.depth:
                self._local.depth += 1
                try:
                    yield conn
                finally:
                    self._local.depth -= 1
                return
            self._local.depth = 1
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._local.depth = 0

    def q(self, sql, params=()):
        return self.conn().execute(sql, params).fetchall()

    def q1(self, sql, params=()):
        return self.conn().execute(sql, params).fetchone()

    # -- key/value ----------------------------------------------------------------------
    def kv_get(self, key, default=None):
        row = self.q1("SELECT value FROM kv WHERE key=?", (key,))
        return json.loads(row[0]) if row else default

    def kv_set(self, key, value):
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, dumps(value)))

    # -- generic documents --------------------------------------------------------------
    def doc(self, table, ref):
        row = self.q1("SELECT doc FROM %s WHERE ref=?" % table, (ref,))  # noqa: S608 - fixed table names
        return json.loads(row[0]) if row else None

    def put_doc(self, table, ref, doc, **cols):
        names = ["ref", "doc", *cols]
        values = [ref, dumps(doc), *cols.values()]
        sql = "INSERT OR REPLACE INTO %s (%s) VALUES (%s)" % (  # noqa: S608 - fixed table names
            table, ", ".join(names), ", ".join("?" * len(names)))
        with self.tx() as c:
            c.execute(sql, values)

    def update_doc(self, table, ref, func):
        """Atomically apply ``func(doc) -> doc`` to a stored document; returns the new document."""
        with self.tx() as c:
            row = c.execute("SELECT doc FROM %s WHERE ref=?" % table, (ref,)).fetchone()  # noqa: S608
            if row is None:
                return None
            doc = func(json.loads(row[0]))
            c.execute("UPDATE %s SET doc=? WHERE ref=?" % table, (dumps(doc), ref))  # noqa: S608
            return doc

    def wipe(self):
        with self.tx() as c:
            for table in ("challenges", "tokens", "auth_ops", "sessions", "session_invoices", "invoices",
                          "invoice_xml", "parties", "blobs", "exports", "grants"):
                c.execute("DELETE FROM %s" % table)  # noqa: S608 - fixed table names
