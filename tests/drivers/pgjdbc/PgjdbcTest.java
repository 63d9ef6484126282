// pgjdbc through pgproxy (or PostgreSQL directly): see scripts/test-drivers.
//
//   javac -cp postgresql.jar -d OUT PgjdbcTest.java && java -cp OUT:postgresql.jar PgjdbcTest
//
// Prints one PASS/FAIL line per check; exits 1 if any check failed.
// Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PGobject;
import org.postgresql.util.PSQLException;

public class PgjdbcTest {
  static final String HOST = env("DRIVER_HOST", "127.0.0.1");
  static final String PORT = env("DRIVER_PORT", "6432");
  static final String USER = env("DRIVER_USER", "app");
  static final String PASSWORD = env("DRIVER_PASSWORD", "secret");
  static final String DB = env("DRIVER_DB", "app");
  static final String TARGET = env("DRIVER_TARGET", "unknown");
  static final String TAG =
      TARGET.substring(0, Math.min(3, TARGET.length())) + "_" + ProcessHandle.current().pid();
  static final String T = "drv_jdbc_" + TAG;

  static int passed = 0;
  static int failed = 0;
  static final ExecutorService RUNNER = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r);
    t.setDaemon(true);
    return t;
  });

  static String env(String k, String d) {
    String v = System.getenv(k);
    return v == null || v.isEmpty() ? d : v;
  }

  interface Body {
    void run() throws Exception;
  }

  static void check(String name, Body body) {
    check(name, body, 60);
  }

  static void check(String name, Body body, int timeoutSecs) {
    long t0 = System.nanoTime();
    Future<?> f = RUNNER.submit(() -> {
      body.run();
      return null;
    });
    try {
      f.get(timeoutSecs, TimeUnit.SECONDS);
      passed++;
      System.out.printf("PASS pgjdbc %s: %s (%.2fs)%n", TARGET, name, (System.nanoTime() - t0) / 1e9);
    } catch (TimeoutException e) {
      failed++;
      f.cancel(true);
      System.out.printf("FAIL pgjdbc %s: %s: no answer after %ds (hung)%n", TARGET, name, timeoutSecs);
    } catch (Exception e) {
      failed++;
      Throwable c = e.getCause() != null ? e.getCause() : e;
      java.io.StringWriter sw = new java.io.StringWriter();
      c.printStackTrace(new java.io.PrintWriter(sw));
      System.out.printf("FAIL pgjdbc %s: %s: %s%n", TARGET, name, sw);
    }
    System.out.flush();
  }

  static Connection connect() throws SQLException {
    return connect(new Properties());
  }

  static Connection connect(Properties extra) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", USER);
    p.setProperty("password", PASSWORD);
    p.setProperty("connectTimeout", "10");
    p.setProperty("socketTimeout", "60");
    p.putAll(extra);
    return DriverManager.getConnection("jdbc:postgresql://" + HOST + ":" + PORT + "/" + DB, p);
  }

  static void eq(Object actual, Object expected, String what) {
    boolean same = expected == null ? actual == null
        : (expected instanceof byte[] && actual instanceof byte[])
            ? Arrays.equals((byte[]) expected, (byte[]) actual)
            : expected.equals(actual);
    if (!same) {
      throw new AssertionError(what + ": expected " + expected + ", got " + actual);
    }
  }

  static void expectState(Body body, String sqlState, String what) throws Exception {
    try {
      body.run();
    } catch (SQLException e) {
      eq(e.getSQLState(), sqlState, what + " SQLSTATE (" + e.getMessage() + ")");
      return;
    }
    throw new AssertionError(what + ": no error");
  }

  static Object one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
      rs.next();
      return rs.getObject(1);
    }
  }

  // ------------------------------------------------------------------ checks

  static void tConnect() throws Exception {
    try (Connection c = connect()) {
      eq(one(c, "SELECT current_user"), USER, "current_user");
      eq(one(c, "SHOW client_encoding"), "UTF8", "client_encoding");
      int major = c.getMetaData().getDatabaseMajorVersion();
      if (major < 10) throw new AssertionError("server version " + major);
    }
  }

  static void tSimple() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + T + "; CREATE TABLE " + T + " (id int PRIMARY KEY, v text)");
      eq(s.executeUpdate("INSERT INTO " + T + " VALUES (1, 'a'), (2, 'b')"), 2, "insert count");
      // several results from one execute()
      boolean isRs = s.execute("SELECT 1; UPDATE " + T + " SET v = v || '!'; SELECT v FROM " + T + " ORDER BY id");
      eq(isRs, true, "first result is a result set");
      s.getMoreResults();
      eq(s.getUpdateCount(), 2, "update count");
      s.getMoreResults();
      try (ResultSet rs = s.getResultSet()) {
        rs.next();
        eq(rs.getString(1), "a!", "row 1");
        rs.next();
        eq(rs.getString(1), "b!", "row 2");
      }
    }
  }

  static void tTypes() throws Exception {
    try (Connection c = connect()) {
      String q = "SELECT ?::int, ?::bigint, ?::text, ?::bytea, ?::numeric, ?::timestamptz, ?::uuid,"
          + " ?::json, ?::jsonb, ?::int[], ?::text[], ?::text, ?::float8, ?::bool, ?::date";
      OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 12, 34, 56, 789_000_000, ZoneOffset.UTC);
      UUID u = UUID.fromString("12345678-1234-5678-1234-567812345678");
      byte[] bytes = {0, 1, (byte) 255, 'b', 'i', 'n'};
      BigDecimal n = new BigDecimal("12345678901234567890.123456789");
      // run it past prepareThreshold so that both the unnamed and the named/binary paths run
      for (int i = 0; i < 8; i++) {
        try (PreparedStatement ps = c.prepareStatement(q)) {
          ps.setInt(1, 42 + i);
          ps.setLong(2, (1L << 40) + 7);
          ps.setString(3, "héllo ☃ 'quote'");
          ps.setBytes(4, bytes);
          ps.setBigDecimal(5, n);
          ps.setObject(6, ts);
          ps.setObject(7, u);
          PGobject j = new PGobject();
          j.setType("json");
          j.setValue("{\"a\": [1, 2, {\"b\": null}], \"c\": \"d\"}");
          ps.setObject(8, j);
          PGobject jb = new PGobject();
          jb.setType("jsonb");
          jb.setValue("{\"jb\": true}");
          ps.setObject(9, jb);
          ps.setArray(10, c.createArrayOf("int4", new Integer[] {1, 2, 3}));
          ps.setArray(11, c.createArrayOf("text", new String[] {"x", null, "z"}));
          ps.setNull(12, Types.VARCHAR);
          ps.setDouble(13, 1.5);
          ps.setBoolean(14, true);
          ps.setObject(15, LocalDate.of(1999, 12, 31));
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            String it = " (iteration " + i + ")";
            eq(rs.getInt(1), 42 + i, "int" + it);
            eq(rs.getLong(2), (1L << 40) + 7, "bigint" + it);
            eq(rs.getString(3), "héllo ☃ 'quote'", "text" + it);
            eq(rs.getBytes(4), bytes, "bytea" + it);
            eq(rs.getBigDecimal(5), n, "numeric" + it);
            eq(rs.getObject(6, OffsetDateTime.class).toInstant(), ts.toInstant(), "timestamptz" + it);
            eq(rs.getObject(7), u, "uuid" + it);
            eq(rs.getString(8), "{\"a\": [1, 2, {\"b\": null}], \"c\": \"d\"}", "json" + it);
            eq(rs.getString(9), "{\"jb\": true}", "jsonb" + it);
            eq(Arrays.asList((Integer[]) rs.getArray(10).getArray()), Arrays.asList(1, 2, 3), "int[]" + it);
            eq(Arrays.asList((String[]) rs.getArray(11).getArray()), Arrays.asList("x", null, "z"), "text[]" + it);
            eq(rs.getString(12), null, "null" + it);
            eq(rs.getDouble(13), 1.5, "float8" + it);
            eq(rs.getBoolean(14), true, "bool" + it);
            eq(rs.getObject(15, LocalDate.class), LocalDate.of(1999, 12, 31), "date" + it);
          }
        }
      }
      byte[] blob = new byte[256 * 1000];
      for (int i = 0; i < blob.length; i++) blob[i] = (byte) i;
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::bytea")) {
        ps.setBytes(1, blob);
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          eq(rs.getBytes(1), blob, "big bytea");
        }
      }
    }
  }

  static void tPrepared() throws Exception {
    try (Connection c = connect()) {
      // prepareThreshold defaults to 5: from the 5th execution on, a named server statement (S_n)
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, ? || 'x'")) {
        for (int i = 0; i < 20; i++) {
          ps.setInt(1, i);
          ps.setString(2, String.valueOf(i));
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getInt(1), i * 2, "iteration " + i);
            eq(rs.getString(2), i + "x", "iteration " + i);
          }
        }
        if (!ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare()) {
          throw new AssertionError("pgjdbc did not switch to a server-prepared statement");
        }
      }
      // the same SQL through new PreparedStatement objects: pgjdbc's statement cache reuses S_n
      for (int i = 0; i < 12; i++) {
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::bigint + 1")) {
          ps.setLong(1, i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getLong(1), i + 1L, "cached " + i);
          }
        }
      }
      // server-prepared statements inside transactions
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::text || 'tx'")) {
        for (int i = 0; i < 12; i++) {
          ps.setString(1, "v" + i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getString(1), "v" + i + "tx", "in transaction " + i);
          }
          if (i % 3 == 0) c.commit();
          if (i % 3 == 1) c.rollback();
        }
      }
      c.commit();
      c.setAutoCommit(true);
      // batches: pipelined Parse/Bind/Execute with one Sync
      try (Statement s = c.createStatement()) {
        s.execute("CREATE TABLE IF NOT EXISTS " + T + "_m (a int, b text)");
      }
      for (int round = 0; round < 3; round++) {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + T + "_m VALUES (?, ?)")) {
          for (int i = 0; i < 50; i++) {
            ps.setInt(1, i);
            ps.setString(2, "r" + i);
            ps.addBatch();
          }
          int[] counts = ps.executeBatch();
          eq(counts.length, 50, "batch size");
        }
      }
      eq(one(c, "SELECT count(*) FROM " + T + "_m"), 150L, "batched rows");
      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE " + T + "_m");
      }
    }
    // a server-prepared statement whose result type changes (a migration while the application
    // runs): PostgreSQL fails it with "cached plan must not change result type" (0A000) and
    // pgjdbc, in autocommit, prepares it again under a new name and retries
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + T + "_alt; CREATE TABLE " + T + "_alt (a int); INSERT INTO " + T + "_alt VALUES (1)");
      try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + T + "_alt")) {
        for (int i = 0; i < 7; i++) {
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getInt(1), 1, "before ALTER " + i);
          }
        }
        s.execute("ALTER TABLE " + T + "_alt ALTER COLUMN a TYPE bigint");
        for (int i = 0; i < 3; i++) {
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getLong(1), 1L, "after ALTER " + i);
          }
        }
      }
      s.execute("DROP TABLE " + T + "_alt");
    }
    // prepareThreshold=1 and binary transfer for everything
    Properties p = new Properties();
    p.setProperty("prepareThreshold", "1");
    try (Connection c = connect(p); PreparedStatement ps = c.prepareStatement("SELECT ?::int + ?::int")) {
      for (int i = 0; i < 10; i++) {
        ps.setInt(1, i);
        ps.setInt(2, i);
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          eq(rs.getInt(1), 2 * i, "threshold 1, iteration " + i);
        }
      }
    }
  }

  static void tTransactions() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("CREATE TABLE IF NOT EXISTS " + T + "_tx (a int)");
      c.setAutoCommit(false);
      s.executeUpdate("INSERT INTO " + T + "_tx VALUES (1)");
      c.commit();
      s.executeUpdate("INSERT INTO " + T + "_tx VALUES (2)");
      c.rollback();
      s.executeUpdate("INSERT INTO " + T + "_tx VALUES (3)");
      java.sql.Savepoint sp = c.setSavepoint();
      s.executeUpdate("INSERT INTO " + T + "_tx VALUES (4)");
      c.rollback(sp);
      c.commit();
      c.setAutoCommit(true);
      eq(one(c, "SELECT array_agg(a ORDER BY a)::text FROM " + T + "_tx"), "{1,3}", "contents");
      c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
      c.setAutoCommit(false);
      eq(one(c, "SHOW transaction_isolation"), "serializable", "isolation");
      c.commit();
      c.setAutoCommit(true);
      s.execute("DROP TABLE " + T + "_tx");
    }
  }

  static void tErrorInTx() throws Exception {
    try (Connection c = connect()) {
      c.setAutoCommit(false);
      one(c, "SELECT 1");
      expectState(() -> one(c, "SELECT 1/0"), "22012", "1/0");
      expectState(() -> one(c, "SELECT 1"), "25P02", "aborted transaction");
      c.rollback();
      eq(one(c, "SELECT 2"), 2, "after rollback");
      c.commit();
      c.setAutoCommit(true);
      try (PreparedStatement ps = c.prepareStatement("SELECT 10 / ?")) {
        for (int i = 0; i < 10; i++) {
          ps.setInt(1, i % 2 == 1 ? 0 : 5);
          if (i % 2 == 1) {
            expectState(() -> ps.executeQuery().close(), "22012", "10/0 #" + i);
          } else {
            try (ResultSet rs = ps.executeQuery()) {
              rs.next();
              eq(rs.getInt(1), 2, "10/5 #" + i);
            }
          }
        }
      }
      expectState(() -> {
        try (PreparedStatement ps = c.prepareStatement("SELECT * FROM no_such_table_xyz WHERE a = ?")) {
          ps.setInt(1, 1);
          ps.executeQuery();
        }
      }, "42P01", "parse error");
      eq(one(c, "SELECT 3"), 3, "after parse error");
      // an error inside a batch in a transaction
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?")) {
        for (int v : new int[] {1, 0, 1}) {
          ps.setInt(1, v);
          ps.addBatch();
        }
        try {
          ps.executeBatch();
          throw new AssertionError("no error from batch");
        } catch (java.sql.BatchUpdateException e) {
          // expected
        }
      }
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT 4"), 4, "after batch error");
    }
  }

  static void tCopy() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + T + "_c; CREATE TABLE " + T + "_c (a int, b text)");
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      int n = 5000;
      StringBuilder sb = new StringBuilder();
      for (int i = 0; i < n; i++) sb.append(i).append("\trow ").append(i).append('\n');
      long copied = cm.copyIn("COPY " + T + "_c (a, b) FROM STDIN", new StringReader(sb.toString()));
      eq(copied, (long) n, "copyIn count");
      eq(one(c, "SELECT sum(a) FROM " + T + "_c"), (long) n * (n - 1) / 2, "sum");
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      long outN = cm.copyOut("COPY (SELECT a, b FROM " + T + "_c ORDER BY a) TO STDOUT", out);
      eq(outN, (long) n, "copyOut count");
      String[] lines = out.toString(StandardCharsets.UTF_8).split("\n");
      eq(lines.length, n, "copyOut lines");
      eq(lines[7], "7\trow 7", "line 7");
      expectState(() -> cm.copyIn("COPY " + T + "_c (a) FROM STDIN",
          new ByteArrayInputStream("1\nnope\n".getBytes(StandardCharsets.UTF_8))), "22P02", "bad copy data");
      // copy inside a transaction, rolled back
      c.setAutoCommit(false);
      cm.copyIn("COPY " + T + "_c (a) FROM STDIN", new StringReader("1\n2\n"));
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT count(*) FROM " + T + "_c"), (long) n, "after failed copies");
      // a CopyIn cancelled by the client (CopyFail)
      org.postgresql.copy.CopyIn ci = cm.copyIn("COPY " + T + "_c (a) FROM STDIN");
      ci.writeToCopy("9\n".getBytes(StandardCharsets.UTF_8), 0, 2);
      ci.cancelCopy();
      eq(one(c, "SELECT count(*) FROM " + T + "_c"), (long) n, "after CopyFail");
      s.execute("DROP TABLE " + T + "_c");
    }
  }

  static void tListenNotify() throws Exception {
    String chan = "jchan_" + TAG;
    try (Connection l = connect(); Connection nfy = connect()) {
      try (Statement s = l.createStatement()) {
        s.execute("LISTEN " + chan);
      }
      try (Statement s = nfy.createStatement()) {
        s.execute("NOTIFY " + chan + ", 'one'");
      }
      try (PreparedStatement ps = nfy.prepareStatement("SELECT pg_notify(?, ?)")) {
        ps.setString(1, chan);
        ps.setString(2, "two");
        ps.executeQuery().close();
      }
      PGConnection pgl = l.unwrap(PGConnection.class);
      List<String> got = new ArrayList<>();
      long deadline = System.currentTimeMillis() + 10_000;
      while (got.size() < 2 && System.currentTimeMillis() < deadline) {
        PGNotification[] ns = pgl.getNotifications(1000);
        if (ns != null) for (PGNotification nt : ns) got.add(nt.getName() + ":" + nt.getParameter());
      }
      eq(got, Arrays.asList(chan + ":one", chan + ":two"), "notifications");
      try (Statement s = l.createStatement()) {
        s.execute("UNLISTEN " + chan);
      }
      eq(one(l, "SELECT 1"), 1, "listener usable");
    }
  }

  static void tSettings() throws Exception {
    Properties p = new Properties();
    p.setProperty("ApplicationName", "jdbc-drv");
    p.setProperty("options", "-c statement_timeout=12s");
    try (Connection c = connect(p); Statement s = c.createStatement()) {
      for (int i = 0; i < 5; i++) {
        eq(one(c, "SELECT current_setting('application_name')"), "jdbc-drv", "ApplicationName " + i);
        eq(one(c, "SHOW statement_timeout"), "12s", "options " + i);
      }
      s.execute("SET TimeZone = 'Asia/Tokyo'");
      for (int i = 0; i < 5; i++) {
        c.setAutoCommit(false);
        eq(one(c, "SHOW TimeZone"), "Asia/Tokyo", "TimeZone " + i);
        c.commit();
        c.setAutoCommit(true);
        eq(one(c, "SELECT to_char('2024-01-01 00:00+00'::timestamptz, 'HH24')"), "09", "offset " + i);
      }
      // setClientInfo sets application_name with SET
      c.setClientInfo("ApplicationName", "jdbc-drv-2");
      for (int i = 0; i < 3; i++) {
        eq(one(c, "SELECT current_setting('application_name')"), "jdbc-drv-2", "setClientInfo " + i);
      }
    }
  }

  static void tConcurrency() throws Exception {
    int nThreads = 12;
    int nIter = 25;
    ExecutorService ex = Executors.newFixedThreadPool(nThreads);
    ConcurrentLinkedQueue<String> errs = new ConcurrentLinkedQueue<>();
    List<Future<?>> fs = new ArrayList<>();
    for (int k = 0; k < nThreads; k++) {
      final int kk = k;
      fs.add(ex.submit(() -> {
        try (Connection c = connect();
            PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1, ?::text");
            PreparedStatement ps3 = c.prepareStatement("SELECT ?::bigint * 3")) {
          for (int i = 0; i < nIter; i++) {
            int v = kk * 1000 + i;
            ps.setInt(1, v);
            ps.setString(2, "w" + kk);
            try (ResultSet rs = ps.executeQuery()) {
              rs.next();
              if (rs.getInt(1) != v + 1 || !rs.getString(2).equals("w" + kk)) {
                errs.add("thread " + kk + " iteration " + i + ": got " + rs.getInt(1) + "," + rs.getString(2));
              }
            }
            if (i % 5 == 0) {
              c.setAutoCommit(false);
              ps3.setLong(1, v);
              try (ResultSet rs = ps3.executeQuery()) {
                rs.next();
                if (rs.getLong(1) != v * 3L) errs.add("thread " + kk + " tx " + i + ": got " + rs.getLong(1));
              }
              c.commit();
              c.setAutoCommit(true);
            }
          }
        } catch (Exception e) {
          errs.add("thread " + kk + ": " + e);
        }
      }));
    }
    for (Future<?> f : fs) f.get(100, TimeUnit.SECONDS);
    ex.shutdown();
    if (!errs.isEmpty()) throw new AssertionError(String.join("; ", errs));
  }

  static void tCursor() throws Exception {
    try (Connection c = connect()) {
      c.setAutoCommit(false); // setFetchSize uses a portal only inside a transaction
      try (PreparedStatement ps = c.prepareStatement("SELECT g, g::text FROM generate_series(1, 1000) g WHERE g > ?")) {
        ps.setFetchSize(50);
        for (int round = 0; round < 7; round++) { // past prepareThreshold too
          ps.setInt(1, round);
          int count = 0;
          int last = 0;
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
              count++;
              last = rs.getInt(1);
              if (count == 60) eq(one(c, "SELECT 'between'"), "between", "query between fetches");
            }
          }
          eq(count, 1000 - round, "rows round " + round);
          eq(last, 1000, "last row round " + round);
        }
      }
      // two open portals interleaved
      try (Statement s1 = c.createStatement(); Statement s2 = c.createStatement()) {
        s1.setFetchSize(10);
        s2.setFetchSize(10);
        try (ResultSet r1 = s1.executeQuery("SELECT generate_series(1, 100)");
            ResultSet r2 = s2.executeQuery("SELECT generate_series(101, 200)")) {
          int sum = 0;
          while (r1.next() & r2.next()) sum += r1.getInt(1) + r2.getInt(1);
          eq(sum, 20100, "interleaved portals");
        }
      }
      c.commit();
    }
  }

  static void tCancel() throws Exception {
    try (Connection c = connect()) {
      // setQueryTimeout: pgjdbc sends a CancelRequest after 1 s
      try (Statement s = c.createStatement()) {
        s.setQueryTimeout(1);
        long t0 = System.currentTimeMillis();
        expectState(() -> s.execute("SELECT pg_sleep(20)"), "57014", "setQueryTimeout");
        if (System.currentTimeMillis() - t0 > 10_000) throw new AssertionError("cancel took too long");
      }
      eq(one(c, "SELECT 'alive'"), "alive", "usable after timeout");
      // Statement.cancel() from another thread, on a server-prepared statement in a transaction
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement("SELECT pg_sleep(?)")) {
        ps.unwrap(org.postgresql.PGStatement.class).setPrepareThreshold(1);
        ps.setInt(1, 0);
        ps.executeQuery().close();
        ps.setInt(1, 20);
        Future<?> canceller = RUNNER.submit(() -> {
          Thread.sleep(500);
          ps.cancel();
          return null;
        });
        expectState(() -> ps.executeQuery(), "57014", "Statement.cancel");
        canceller.get();
      }
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT 'alive2'"), "alive2", "usable after cancel");
    }
  }

  static Properties props(String... kv) {
    Properties p = new Properties();
    for (int i = 0; i < kv.length; i += 2) p.setProperty(kv[i], kv[i + 1]);
    return p;
  }

  static void exec(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) {
      s.execute(sql);
    }
  }

  static void tBatchKeys() throws Exception {
    for (String rewrite : new String[] {"false", "true"}) {
      String tb = T + "_bk" + (rewrite.equals("true") ? "r" : "");
      try (Connection c = connect(props("reWriteBatchedInserts", rewrite))) {
        exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (id serial PRIMARY KEY, a int, b text)");
        // a big batch (pgjdbc pipelines many Bind/Execute, or rewrites into multi-row INSERTs)
        int n = 2000;
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " (id, a, b) VALUES (?, ?, ?)")) {
          for (int i = 0; i < n; i++) {
            ps.setInt(1, 100000 + i);
            ps.setInt(2, i);
            ps.setString(3, "row " + i);
            ps.addBatch();
          }
          int[] counts = ps.executeBatch();
          eq(counts.length, n, "batch counts (rewrite " + rewrite + ")");
        }
        eq(one(c, "SELECT count(*) FROM " + tb), (long) n, "rows (rewrite " + rewrite + ")");
        // generated keys of single statements and of a batch
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " (a, b) VALUES (?, ?)",
            Statement.RETURN_GENERATED_KEYS)) {
          ps.setInt(1, -1);
          ps.setString(2, "k");
          eq(ps.executeUpdate(), 1, "insert count");
          try (ResultSet rs = ps.getGeneratedKeys()) {
            rs.next();
            eq(rs.getInt("id"), 1, "first generated key (rewrite " + rewrite + ")");
          }
          for (int i = 0; i < 5; i++) {
            ps.setInt(1, -2 - i);
            ps.setString(2, "kb");
            ps.addBatch();
          }
          ps.executeBatch();
          List<Integer> keys = new ArrayList<>();
          try (ResultSet rs = ps.getGeneratedKeys()) {
            while (rs.next()) keys.add(rs.getInt("id"));
          }
          eq(keys, Arrays.asList(2, 3, 4, 5, 6), "batch generated keys (rewrite " + rewrite + ")");
        }
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " (a, b) VALUES (?, ?)", new String[] {"id", "b"})) {
          c.setAutoCommit(false);
          ps.setInt(1, -10);
          ps.setString(2, "named");
          ps.executeUpdate();
          try (ResultSet rs = ps.getGeneratedKeys()) {
            rs.next();
            eq(rs.getInt(1) + "/" + rs.getString(2), "7/named", "named key columns in a transaction");
          }
          c.commit();
          c.setAutoCommit(true);
        }
        // a batch in a transaction with a duplicate key: BatchUpdateException, nothing committed
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " (id, a) VALUES (?, ?)")) {
          for (int id : new int[] {900001, 900002, 100005, 900003}) {
            ps.setInt(1, id);
            ps.setInt(2, 0);
            ps.addBatch();
          }
          try {
            ps.executeBatch();
            throw new AssertionError("no BatchUpdateException");
          } catch (java.sql.BatchUpdateException e) {
            eq(e.getSQLState(), "23505", "batch duplicate key");
          }
        }
        c.rollback();
        c.setAutoCommit(true);
        eq(one(c, "SELECT count(*) FROM " + tb + " WHERE id > 900000"), 0L, "rolled back batch");
        exec(c, "DROP TABLE " + tb);
      }
    }
  }

  static void tAutosave() throws Exception {
    // autosave=conservative rolls back to its savepoint only for cached-plan errors: not this
    for (String mode : new String[] {"always"}) {
      try (Connection c = connect(props("autosave", mode))) {
        String tb = T + "_as";
        exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int PRIMARY KEY)");
        c.setAutoCommit(false);
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + tb + " VALUES (?)")) {
          for (int i = 0; i < 10; i++) {
            ins.setInt(1, i % 4 == 3 ? 0 : i); // every 4th is a duplicate of row 0
            if (i % 4 == 3) {
              expectState(ins::executeUpdate, "23505", "duplicate " + i + " (autosave " + mode + ")");
            } else {
              eq(ins.executeUpdate(), 1, "insert " + i + " (autosave " + mode + ")");
            }
          }
        }
        // the transaction survived the errors (pgjdbc rolled back to its savepoint)
        eq(one(c, "SELECT count(*) FROM " + tb), 8L, "rows in transaction (autosave " + mode + ")");
        c.commit();
        c.setAutoCommit(true);
        eq(one(c, "SELECT count(*) FROM " + tb), 8L, "committed (autosave " + mode + ")");
        exec(c, "DROP TABLE " + tb);
      }
    }
  }

  static void tSavepoints() throws Exception {
    try (Connection c = connect()) {
      String tb = T + "_sv";
      exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int PRIMARY KEY)");
      c.setAutoCommit(false);
      try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + tb + " VALUES (?)")) {
        ins.setInt(1, 1);
        ins.executeUpdate();
        java.sql.Savepoint sp1 = c.setSavepoint("first");
        ins.setInt(1, 2);
        ins.executeUpdate();
        java.sql.Savepoint sp2 = c.setSavepoint();
        ins.setInt(1, 1);
        expectState(ins::executeUpdate, "23505", "duplicate");
        expectState(() -> one(c, "SELECT 1"), "25P02", "aborted");
        c.rollback(sp2);
        ins.setInt(1, 3);
        ins.executeUpdate();
        c.releaseSavepoint(sp1);
        java.sql.Savepoint sp3 = c.setSavepoint("third");
        for (int i = 10; i < 20; i++) {
          ins.setInt(1, i);
          ins.executeUpdate(); // past prepareThreshold inside the savepoint
        }
        c.rollback(sp3);
        c.commit();
      }
      c.setAutoCommit(true);
      eq(one(c, "SELECT array_agg(a ORDER BY a)::text FROM " + tb), "{1,2,3}", "contents");
      exec(c, "DROP TABLE " + tb);
    }
  }

  static void tCallable() throws Exception {
    try (Connection c = connect()) {
      String f = T + "_f";
      exec(c, "CREATE OR REPLACE FUNCTION " + f + "(x int, OUT doubled int, OUT label text) AS "
          + "$$ SELECT x * 2, 'n' || x $$ LANGUAGE sql");
      exec(c, "CREATE OR REPLACE FUNCTION " + f + "_s(x int) RETURNS int AS $$ SELECT x + 100 $$ LANGUAGE sql");
      exec(c, "CREATE OR REPLACE PROCEDURE " + f + "_p(INOUT x int) AS $$ BEGIN x := x * 3; END $$ LANGUAGE plpgsql");
      if (TARGET.equals("sharded")) {
        // pgproxy cannot see into a user function: without a key it refuses the call
        // (0A000); SET pgproxy.shard_key says which shard's rows the calls are about.
        try (java.sql.CallableStatement cs = c.prepareCall("{? = call " + f + "_s(?)}")) {
          cs.registerOutParameter(1, Types.INTEGER);
          cs.setInt(2, 1);
          cs.execute();
          throw new AssertionError("a keyless call of a user function was not refused");
        } catch (java.sql.SQLException e) {
          eq(e.getSQLState(), "0A000", "keyless user function call refused");
        }
        exec(c, "SET pgproxy.shard_key = 1");
      }
      for (int i = 0; i < 7; i++) {
        try (java.sql.CallableStatement cs = c.prepareCall("{? = call " + f + "_s(?)}")) {
          cs.registerOutParameter(1, Types.INTEGER);
          cs.setInt(2, i);
          cs.execute();
          eq(cs.getInt(1), 100 + i, "{? = call} " + i);
        }
        try (java.sql.CallableStatement cs = c.prepareCall("{call " + f + "(?, ?, ?)}")) {
          cs.setInt(1, i);
          cs.registerOutParameter(2, Types.INTEGER);
          cs.registerOutParameter(3, Types.VARCHAR);
          cs.execute();
          eq(cs.getInt(2) + "/" + cs.getString(3), (2 * i) + "/n" + i, "OUT parameters " + i);
        }
        try (java.sql.CallableStatement cs = c.prepareCall("CALL " + f + "_p(?)")) {
          cs.setInt(1, i);
          cs.registerOutParameter(1, Types.INTEGER);
          cs.execute();
          eq(cs.getInt(1), 3 * i, "CALL procedure INOUT " + i);
        }
      }
      exec(c, "DROP FUNCTION " + f + "(int); DROP FUNCTION " + f + "_s(int); DROP PROCEDURE " + f + "_p(int)");
    }
  }

  static void tMetaData() throws Exception {
    try (Connection c = connect()) {
      String tb = T + "_md";
      exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb
          + " (id bigint PRIMARY KEY, name varchar(40) NOT NULL, price numeric(10, 2), at timestamptz)");
      exec(c, "CREATE INDEX " + tb + "_name ON " + tb + " (name)");
      java.sql.DatabaseMetaData md = c.getMetaData();
      try (ResultSet rs = md.getTables(null, "public", tb, new String[] {"TABLE"})) {
        eq(rs.next(), true, "getTables finds the table");
        eq(rs.getString("TABLE_NAME"), tb, "TABLE_NAME");
      }
      List<String> cols = new ArrayList<>();
      try (ResultSet rs = md.getColumns(null, "public", tb, "%")) {
        while (rs.next()) {
          cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("NULLABLE"));
        }
      }
      eq(cols, Arrays.asList("id:int8:0", "name:varchar:0", "price:numeric:1", "at:timestamptz:1"), "getColumns");
      try (ResultSet rs = md.getPrimaryKeys(null, "public", tb)) {
        rs.next();
        eq(rs.getString("COLUMN_NAME"), "id", "getPrimaryKeys");
      }
      int idx = 0;
      try (ResultSet rs = md.getIndexInfo(null, "public", tb, false, false)) {
        while (rs.next()) idx++;
      }
      eq(idx, 2, "getIndexInfo");
      // ResultSetMetaData asks the server about the source columns (nullability, table name)
      try (PreparedStatement ps = c.prepareStatement("SELECT id, name, price FROM " + tb + " WHERE id = ?")) {
        ps.setLong(1, 1);
        try (ResultSet rs = ps.executeQuery()) {
          java.sql.ResultSetMetaData rmd = rs.getMetaData();
          eq(rmd.getColumnCount(), 3, "column count");
          eq(rmd.getTableName(2), tb, "getTableName");
          eq(rmd.isNullable(2), java.sql.ResultSetMetaData.columnNoNulls, "isNullable");
          eq(rmd.getPrecision(3), 10, "getPrecision");
          eq(rmd.getScale(3), 2, "getScale");
        }
        java.sql.ParameterMetaData pmd = ps.getParameterMetaData();
        eq(pmd.getParameterTypeName(1), "int8", "parameter type");
      }
      eq(c.isValid(5), true, "isValid");
      exec(c, "DROP TABLE " + tb);
    }
  }

  static void tQueryModes() throws Exception {
    String[][] variants = {
        {"prepareThreshold", "0"},
        {"prepareThreshold", "-1"},
        {"preferQueryMode", "simple"},
        {"preferQueryMode", "extendedForPrepared"},
        {"preferQueryMode", "extendedCacheEverything"},
        {"binaryTransfer", "false"},
    };
    for (String[] v : variants) {
      String what = v[0] + "=" + v[1];
      try (Connection c = connect(props(v[0], v[1]))) {
        String tb = T + "_qm";
        exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int, t timestamptz, b bytea)");
        OffsetDateTime ts = OffsetDateTime.of(2023, 7, 1, 8, 9, 10, 123_456_000, ZoneOffset.ofHours(2));
        c.setAutoCommit(false);
        // pgjdbc 42.5 does not inline setBytes in preferQueryMode=simple (a bare ? is sent)
        boolean simple = v[1].equals("simple");
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " VALUES (?, ?, "
            + (simple ? "decode(?, 'hex'))" : "?)"))) {
          for (int i = 0; i < 8; i++) {
            ps.setInt(1, i);
            ps.setObject(2, ts.plusDays(i));
            if (simple) ps.setString(3, String.format("%02x00c8", i));
            else ps.setBytes(3, new byte[] {(byte) i, 0, (byte) 200});
            ps.executeUpdate();
          }
        }
        c.commit();
        try (Statement s = c.createStatement()) {
          s.setFetchSize(3);
          try (ResultSet rs = s.executeQuery("SELECT a, t, b FROM " + tb + " ORDER BY a")) {
            int n = 0;
            while (rs.next()) {
              eq(rs.getInt(1), n, what + " row " + n);
              eq(rs.getObject(2, OffsetDateTime.class).toInstant(), ts.plusDays(n).toInstant(), what + " ts " + n);
              eq(rs.getBytes(3), new byte[] {(byte) n, 0, (byte) 200}, what + " bytea " + n);
              n++;
            }
            eq(n, 8, what + " rows");
          }
        }
        c.commit();
        c.setAutoCommit(true);
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1, ?::text")) {
          for (int i = 0; i < 8; i++) {
            ps.setInt(1, i);
            ps.setString(2, "x'" + i);
            try (ResultSet rs = ps.executeQuery()) {
              rs.next();
              eq(rs.getInt(1) + rs.getString(2), (i + 1) + "x'" + i, what + " select " + i);
            }
          }
        }
        exec(c, "DROP TABLE " + tb);
      }
    }
  }

  static void tFetchWithWrites() throws Exception {
    for (String thr : new String[] {"5", "1"}) {
      try (Connection c = connect(props("prepareThreshold", thr))) {
        String tb = T + "_fw";
        exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (id int PRIMARY KEY, v int)");
        exec(c, "INSERT INTO " + tb + " SELECT g, 0 FROM generate_series(1, 500) g");
        c.setAutoCommit(false);
        try (PreparedStatement sel = c.prepareStatement("SELECT id, v FROM " + tb + " WHERE id > ? ORDER BY id");
            PreparedStatement upd = c.prepareStatement("UPDATE " + tb + " SET v = ? WHERE id = ?");
            PreparedStatement cnt = c.prepareStatement("SELECT count(*) FROM " + tb + " WHERE v > 0")) {
          sel.setFetchSize(25);
          sel.setInt(1, 0);
          int n = 0;
          try (ResultSet rs = sel.executeQuery()) {
            while (rs.next()) {
              n++;
              if (rs.getInt(2) != 0) throw new AssertionError("saw own update at row " + n);
              if (n % 10 == 0) { // write while the portal is open
                upd.setInt(1, n);
                upd.setInt(2, rs.getInt(1));
                eq(upd.executeUpdate(), 1, "update at " + n);
              }
              if (n % 100 == 0) {
                try (ResultSet r2 = cnt.executeQuery()) {
                  r2.next();
                  eq(r2.getLong(1), (long) n / 10, "count at " + n + " (prepareThreshold " + thr + ")");
                }
                // a batch between fetches
                for (int k = 0; k < 3; k++) {
                  upd.setInt(1, 1);
                  upd.setInt(2, 1000 + k); // no such row
                  upd.addBatch();
                }
                upd.executeBatch();
              }
            }
          }
          eq(n, 500, "rows (prepareThreshold " + thr + ")");
          // setMaxRows with a fetch size
          sel.setMaxRows(60);
          sel.setInt(1, 100);
          n = 0;
          try (ResultSet rs = sel.executeQuery()) {
            while (rs.next()) n++;
          }
          eq(n, 60, "setMaxRows");
        }
        c.commit();
        c.setAutoCommit(true);
        eq(one(c, "SELECT count(*) FROM " + tb + " WHERE v > 0"), 50L, "committed updates");
        exec(c, "DROP TABLE " + tb);
      }
    }
  }

  static void tReadOnlyTimestamps() throws Exception {
    try (Connection c = connect()) {
      String tb = T + "_ro";
      exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int, ts timestamp, tz timestamptz, d date)");
      java.time.LocalDateTime ldt = java.time.LocalDateTime.of(2024, 3, 31, 1, 30, 0);
      OffsetDateTime odt = OffsetDateTime.of(2024, 3, 31, 1, 30, 0, 0, ZoneOffset.ofHours(-5));
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " VALUES (?, ?, ?, ?)")) {
        for (int i = 0; i < 6; i++) {
          ps.setInt(1, i);
          ps.setObject(2, ldt.plusHours(i));
          ps.setObject(3, odt.plusHours(i));
          ps.setDate(4, java.sql.Date.valueOf(LocalDate.of(2024, 2, 28).plusDays(i)));
          ps.executeUpdate();
        }
      }
      exec(c, "SET TimeZone = 'Europe/Berlin'");
      try (PreparedStatement ps = c.prepareStatement("SELECT ts, tz, d, tz::text FROM " + tb + " WHERE a = ?")) {
        for (int i = 0; i < 6; i++) {
          ps.setInt(1, i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getObject(1, java.time.LocalDateTime.class), ldt.plusHours(i), "timestamp " + i);
            eq(rs.getObject(2, OffsetDateTime.class).toInstant(), odt.plusHours(i).toInstant(), "timestamptz " + i);
            eq(rs.getObject(3, LocalDate.class), LocalDate.of(2024, 2, 28).plusDays(i), "date " + i);
            OffsetDateTime inBerlin = odt.plusHours(i).atZoneSameInstant(java.time.ZoneId.of("Europe/Berlin")).toOffsetDateTime();
            if (!rs.getString(4).endsWith(inBerlin.getOffset().toString().replace(":00", "").replace("Z", "+00"))) {
              throw new AssertionError("tz::text " + i + " in Europe/Berlin: " + rs.getString(4) + " vs " + inBerlin);
            }
          }
        }
      }
      // read-only transactions: pgjdbc sends BEGIN READ ONLY
      c.setReadOnly(true);
      c.setAutoCommit(false);
      eq(one(c, "SELECT count(*) FROM " + tb), 6L, "read in read-only transaction");
      eq(one(c, "SHOW transaction_read_only"), "on", "transaction_read_only");
      expectState(() -> exec(c, "INSERT INTO " + tb + " (a) VALUES (99)"), "25006", "write in read-only transaction");
      c.rollback();
      c.setAutoCommit(true);
      c.setReadOnly(false);
      exec(c, "INSERT INTO " + tb + " (a) VALUES (7)");
      eq(one(c, "SELECT count(*) FROM " + tb), 7L, "write after read-only");
      exec(c, "DROP TABLE " + tb);
    }
  }

  static void tCopyInTx() throws Exception {
    try (Connection c = connect()) {
      String tb = T + "_ct";
      exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int PRIMARY KEY, b text)");
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " VALUES (?, ?)")) {
        for (int i = 0; i < 6; i++) {
          ps.setInt(1, -1 - i);
          ps.setString(2, "before");
          ps.executeUpdate();
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 1000; i++) sb.append(i).append(",\"q ").append(i).append("\"\n");
        eq(cm.copyIn("COPY " + tb + " FROM STDIN (FORMAT csv)", new StringReader(sb.toString())), 1000L, "copyIn in tx");
        for (int i = 0; i < 6; i++) {
          ps.setInt(1, 5000 + i);
          ps.setString(2, "after");
          ps.executeUpdate();
        }
      }
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      eq(cm.copyOut("COPY (SELECT a FROM " + tb + " WHERE a < 0 OR a >= 5000 ORDER BY a) TO STDOUT", out), 12L, "copyOut in tx");
      c.commit();
      // a copy error inside a transaction, a savepoint around it
      java.sql.Savepoint sp = c.setSavepoint();
      expectState(() -> cm.copyIn("COPY " + tb + " FROM STDIN (FORMAT csv)", new StringReader("1,dup\n")), "23505", "copy duplicate");
      c.rollback(sp);
      eq(one(c, "SELECT count(*) FROM " + tb), 1012L, "after copy error in savepoint");
      c.commit();
      c.setAutoCommit(true);
      exec(c, "DROP TABLE " + tb);
    }
  }

  static void tConservativeAlter() throws Exception {
    // autosave=conservative: a server-prepared statement invalidated by ALTER inside a transaction
    // ("cached plan must not change result type") is retried by pgjdbc after rolling back to its
    // savepoint, without aborting the application's transaction
    try (Connection c = connect(props("autosave", "conservative")); Connection other = connect()) {
      String tb = T + "_ca";
      exec(c, "DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int, b text); INSERT INTO " + tb + " VALUES (1, 'x')");
      try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + tb)) {
        for (int i = 0; i < 6; i++) {
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getInt(1), 1, "before ALTER " + i);
          }
        }
        exec(other, "ALTER TABLE " + tb + " ADD COLUMN c int DEFAULT 7");
        c.setAutoCommit(false);
        exec(c, "INSERT INTO " + tb + " (a, b) VALUES (2, 'y')");
        try (ResultSet rs = ps.executeQuery()) {
          int n = 0;
          while (rs.next()) {
            eq(rs.getInt(3), 7, "new column");
            n++;
          }
          eq(n, 2, "rows after ALTER in transaction");
        }
        c.commit();
        c.setAutoCommit(true);
      }
      eq(one(c, "SELECT count(*) FROM " + tb), 2L, "committed");
      exec(c, "DROP TABLE " + tb);
    }
  }

  static void tStatementBatch() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      String tb = T + "_sb";
      s.addBatch("DROP TABLE IF EXISTS " + tb);
      s.addBatch("CREATE TABLE " + tb + " (a int PRIMARY KEY, b text)");
      for (int i = 0; i < 300; i++) s.addBatch("INSERT INTO " + tb + " VALUES (" + i + ", 'r" + i + "')");
      s.addBatch("UPDATE " + tb + " SET b = b || '!' WHERE a < 10");
      s.addBatch("DELETE FROM " + tb + " WHERE a >= 290");
      int[] counts = s.executeBatch();
      eq(counts.length, 304, "batch results");
      eq(counts[302], 10, "UPDATE count");
      eq(counts[303], 10, "DELETE count");
      eq(one(c, "SELECT count(*) FROM " + tb + " WHERE b LIKE '%!'"), 10L, "updated rows");
      // a large result in chunks, autocommit off
      c.setAutoCommit(false);
      s.setFetchSize(1000);
      long sum = 0;
      int rows = 0;
      try (ResultSet rs = s.executeQuery("SELECT g, repeat('y', 100) FROM generate_series(1, 200000) g")) {
        while (rs.next()) {
          sum += rs.getInt(1);
          rows++;
        }
      }
      eq(rows, 200000, "rows");
      eq(sum, 200000L * 200001 / 2, "sum");
      // an error after some fetches
      s.setFetchSize(100);
      final int[] seen = {0};
      expectState(() -> {
        try (ResultSet rs = s.executeQuery("SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g")) {
          while (rs.next()) seen[0]++;
        }
      }, "22012", "error in a later fetch");
      if (seen[0] < 100) throw new AssertionError("error before the first fetch: " + seen[0]);
      c.rollback();
      // COPY out failing in the middle
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      expectState(() -> cm.copyOut("COPY (SELECT 1 / (50000 - g) FROM generate_series(1, 100000) g) TO STDOUT",
          new ByteArrayOutputStream()), "22012", "error in COPY out");
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT 'ok'"), "ok", "usable");
      s.execute("DROP TABLE " + tb);
    }
  }

  static void tManualTx() throws Exception {
    // transactions driven with SQL in autocommit mode, as some frameworks do
    try (Connection c = connect(props("prepareThreshold", "1")); Statement s = c.createStatement()) {
      String tb = T + "_mt";
      s.execute("DROP TABLE IF EXISTS " + tb + "; CREATE TABLE " + tb + " (a int)");
      try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + tb + " VALUES (?)");
          PreparedStatement sel = c.prepareStatement("SELECT count(*) FROM " + tb)) {
        for (int round = 0; round < 4; round++) {
          s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ");
          ins.setInt(1, round);
          ins.executeUpdate();
          try (ResultSet rs = sel.executeQuery()) {
            rs.next();
            eq(rs.getLong(1), (long) ((round + 1) / 2 + 1), "count in transaction " + round);
          }
          eq(one(c, "SHOW transaction_isolation"), "repeatable read", "isolation " + round);
          s.execute("SET LOCAL statement_timeout = '5s'");
          eq(one(c, "SHOW statement_timeout"), "5s", "SET LOCAL " + round);
          s.execute(round % 2 == 0 ? "COMMIT" : "ROLLBACK");
          eq(one(c, "SHOW statement_timeout"), "0", "after SET LOCAL " + round);
        }
      }
      eq(one(c, "SELECT array_agg(a ORDER BY a)::text FROM " + tb), "{0,2}", "contents");
      s.execute("DROP TABLE " + tb);
    }
  }

  static void tCleanup() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + T);
    }
  }

  // ------------------------------------------------------------------ sharded table (sharded target)
  // drv_contacts is sharded by user_id (hash, two shards: scripts/test-drivers). The table is
  // shared by every driver run, so this run uses its own key range [SH_LO, SH_HI] and deletes its
  // rows at the start and the end. Expected answers are computed here from what was inserted
  // (what one PostgreSQL holding all the rows would answer).
  static final String SH = "drv_contacts";
  static final int SH_USERS = 20;
  static final long SH_LO = 20_000_000_000L + (ProcessHandle.current().pid() % 4_000_000) * 100;
  static final long SH_HI = SH_LO + SH_USERS - 1;
  static final long SH_SMALL = 1_500_000_000L + (ProcessHandle.current().pid() % 4_000_000) * 100;
  static final String SH_RANGE = "user_id BETWEEN " + SH_LO + " AND " + SH_HI;
  // model of this run's rows: "user_id/id" -> {user_id, id, n} and name
  static final java.util.TreeMap<String, long[]> shN = new java.util.TreeMap<>();
  static final java.util.TreeMap<String, String> shName = new java.util.TreeMap<>();
  static final java.util.TreeMap<Long, String> shShard = new java.util.TreeMap<>();

  static String shK(long u, long id) {
    return u + "/" + id;
  }

  static void shPut(long u, long id, String name, long n) {
    shN.put(shK(u, id), new long[] {u, id, n});
    shName.put(shK(u, id), name);
  }

  static List<String> shExpected() {
    List<long[]> rows = new ArrayList<>(shN.values());
    rows.sort((x, y) -> x[0] != y[0] ? Long.compare(x[0], y[0]) : Long.compare(x[1], y[1]));
    List<String> out = new ArrayList<>();
    for (long[] r : rows) out.add(r[0] + "," + r[1] + "," + shName.get(shK(r[0], r[1])) + "," + r[2]);
    return out;
  }

  static List<String> rows(ResultSet rs) throws SQLException {
    List<String> out = new ArrayList<>();
    int nc = rs.getMetaData().getColumnCount();
    while (rs.next()) {
      StringBuilder b = new StringBuilder();
      for (int i = 1; i <= nc; i++) b.append(i > 1 ? "," : "").append(rs.getString(i));
      out.add(b.toString());
    }
    return out;
  }

  static List<String> rows(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
      return rows(rs);
    }
  }

  static void shCheckAll(Connection c, String what) throws SQLException {
    eq(rows(c, "SELECT user_id, id, name, n FROM " + SH + " WHERE " + SH_RANGE + " ORDER BY user_id, id"),
        shExpected(), what);
  }

  static long usersRows(long u) {
    return shN.values().stream().filter(r -> r[0] == u).count();
  }

  static long[] shTwoUsers() {
    long a = SH_LO;
    for (long u = SH_LO; u <= SH_HI; u++) {
      if (!shShard.get(u).equals(shShard.get(a))) return new long[] {a, u};
    }
    throw new AssertionError("all users on one shard");
  }

  static void tShSetup() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("CREATE TABLE IF NOT EXISTS " + SH + " (id bigint, user_id bigint NOT NULL, name text,"
          + " n int, PRIMARY KEY (user_id, id))");
      s.executeUpdate("DELETE FROM " + SH + " WHERE " + SH_RANGE); // keyless: every shard, 2PC
      // the key as a bind parameter, past prepareThreshold: a named statement routed at Bind
      try (PreparedStatement ins = c.prepareStatement(
          "INSERT INTO " + SH + " (id, user_id, name, n) VALUES (?, ?, ?, ?)")) {
        for (int k = 0; k < SH_USERS; k++) {
          long u = SH_LO + k;
          for (int i = 1; i <= 3; i++) {
            ins.setLong(1, i);
            ins.setLong(2, u);
            ins.setString(3, "c" + u + "_" + i);
            ins.setInt(4, k * 10 + i);
            eq(ins.executeUpdate(), 1, "insert " + u + "/" + i);
            shPut(u, i, "c" + u + "_" + i, k * 10 + i);
          }
        }
        eq(ins.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(), true, "server-prepared");
      }
      // where each user landed: the same read on each shard by name (comment hint)
      for (String shard : new String[] {"s0", "s1"}) {
        for (String u : rows(c, "/* pgproxy: shard=" + shard + " */ SELECT user_id FROM " + SH
            + " WHERE " + SH_RANGE + " AND id = 1")) {
          if (shShard.put(Long.parseLong(u), shard) != null) throw new AssertionError("user " + u + " on both shards");
        }
      }
      eq(shShard.size(), SH_USERS, "users placed " + shShard);
      eq(new java.util.HashSet<>(shShard.values()).size(), 2, "both shards hold rows " + shShard);
      shCheckAll(c, "all rows");
    }
  }

  static void tShPointReads() throws Exception {
    try (Connection c = connect();
        PreparedStatement sel = c.prepareStatement("SELECT id, name, n FROM " + SH + " WHERE user_id = ? ORDER BY id")) {
      for (int rnd = 0; rnd < 2; rnd++) {
        for (long u = SH_LO; u <= SH_HI; u++) {
          sel.setLong(1, u);
          List<String> exp = new ArrayList<>();
          for (long i = 1; i <= 3; i++) exp.add(i + "," + shName.get(shK(u, i)) + "," + shN.get(shK(u, i))[2]);
          try (ResultSet rs = sel.executeQuery()) {
            eq(rows(rs), exp, "user " + u + " round " + rnd);
          }
        }
      }
      eq(sel.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(), true, "server-prepared");
    }
  }

  static void tShUpdateDelete() throws Exception {
    try (Connection c = connect();
        PreparedStatement up = c.prepareStatement("UPDATE " + SH + " SET n = n + 100 WHERE user_id = ? AND id = ?");
        PreparedStatement del = c.prepareStatement("DELETE FROM " + SH + " WHERE user_id = ? AND id = ?")) {
      for (int k = 0; k < SH_USERS; k++) {
        long u = SH_LO + k;
        up.setLong(1, u);
        up.setLong(2, 1);
        eq(up.executeUpdate(), 1, "update " + u);
        shN.get(shK(u, 1))[2] += 100;
        if (k % 2 == 0) {
          del.setLong(1, u);
          del.setLong(2, 3);
          eq(del.executeUpdate(), 1, "delete " + u);
          shN.remove(shK(u, 3));
          shName.remove(shK(u, 3));
        }
      }
      shCheckAll(c, "after updates and deletes");
    }
  }

  static void tShTxOneUser() throws Exception {
    long u = SH_LO + 7;
    try (Connection c = connect();
        PreparedStatement up = c.prepareStatement("UPDATE " + SH + " SET n = n + 1 WHERE user_id = ? AND id = 2");
        PreparedStatement ins = c.prepareStatement("INSERT INTO " + SH + " (id, user_id, name, n) VALUES (?, ?, ?, ?)")) {
      c.setAutoCommit(false);
      up.setLong(1, u);
      eq(up.executeUpdate(), 1, "update");
      ins.setLong(1, 10);
      ins.setLong(2, u);
      ins.setString(3, "tx");
      ins.setInt(4, 7);
      ins.executeUpdate();
      c.commit();
      shN.get(shK(u, 2))[2] += 1;
      shPut(u, 10, "tx", 7);
      try (Statement s = c.createStatement()) {
        s.executeUpdate("UPDATE " + SH + " SET n = 0 WHERE user_id = " + u);
      }
      c.rollback();
      c.setAutoCommit(true);
      shCheckAll(c, "after commit and rollback");
    }
  }

  static void tShTxTwoShards() throws Exception {
    long[] ab = shTwoUsers();
    try (Connection c = connect();
        PreparedStatement up = c.prepareStatement("UPDATE " + SH + " SET name = ? WHERE user_id = ? AND id = 1");
        PreparedStatement sel = c.prepareStatement("SELECT name FROM " + SH + " WHERE user_id = ? AND id = 1")) {
      c.setAutoCommit(false);
      for (int rnd = 0; rnd < 6; rnd++) { // past prepareThreshold; even rounds commit, odd roll back
        for (int j = 0; j < 2; j++) {
          up.setString(1, "two" + rnd);
          up.setLong(2, ab[j]);
          eq(up.executeUpdate(), 1, "update " + ab[j] + " round " + rnd);
        }
        sel.setLong(1, ab[0]);
        try (ResultSet rs = sel.executeQuery()) {
          rs.next();
          eq(rs.getString(1), "two" + rnd, "first shard read again, round " + rnd);
        }
        if (rnd % 2 == 0) {
          c.commit();
          shName.put(shK(ab[0], 1), "two" + rnd);
          shName.put(shK(ab[1], 1), "two" + rnd);
        } else {
          c.rollback();
        }
      }
      // an error on the second shard aborts the whole transaction
      try (Statement s = c.createStatement()) {
        s.executeUpdate("UPDATE " + SH + " SET n = -2 WHERE user_id = " + ab[0]);
        expectState(() -> s.executeUpdate("INSERT INTO " + SH + " (id, user_id, name, n) VALUES (1, " + ab[1] + ", 'dup', 1)"),
            "23505", "duplicate key on the second shard");
      }
      c.rollback();
      c.setAutoCommit(true);
      shCheckAll(c, "after the two-shard transactions");
    }
  }

  static void tShMergedReads() throws Exception {
    List<long[]> all = new ArrayList<>(shN.values());
    long cnt = all.size(), sum = 0, min = Long.MAX_VALUE, max = Long.MIN_VALUE;
    for (long[] r : all) {
      sum += r[2];
      min = Math.min(min, r[2]);
      max = Math.max(max, r[2]);
    }
    // pgjdbc's defaults: binary results (int8, int4, numeric...) once a statement is
    // server-prepared; pgproxy encodes the merged values (tShMergedBinary too)
    try (Connection c = connect()) {
      eq(rows(c, "SELECT count(*), sum(n), min(n), max(n) FROM " + SH + " WHERE " + SH_RANGE),
          List.of(cnt + "," + sum + "," + min + "," + max), "count, sum, min, max");
      BigDecimal avg = (BigDecimal) one(c, "SELECT avg(n) FROM " + SH + " WHERE " + SH_RANGE);
      BigDecimal exp = new BigDecimal(sum).divide(new BigDecimal(cnt), 16, java.math.RoundingMode.HALF_EVEN);
      eq(avg.compareTo(exp), 0, "avg " + avg + " vs " + exp);
      // prepared, past prepareThreshold
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*), sum(n) FROM " + SH + " WHERE user_id BETWEEN ? AND ?")) {
        for (int i = 0; i < 8; i++) {
          ps.setLong(1, SH_LO + i);
          ps.setLong(2, SH_HI);
          final long lo = SH_LO + i;
          long ec = all.stream().filter(r -> r[0] >= lo).count();
          long es = all.stream().filter(r -> r[0] >= lo).mapToLong(r -> r[2]).sum();
          try (ResultSet rs = ps.executeQuery()) {
            eq(rows(rs), List.of(ec + "," + es), "prepared count from " + lo);
          }
        }
      }
      // ORDER BY ... LIMIT: k-way merge
      List<long[]> top = new ArrayList<>(all);
      top.sort((x, y) -> x[2] != y[2] ? Long.compare(y[2], x[2]) : x[0] != y[0] ? Long.compare(x[0], y[0]) : Long.compare(x[1], y[1]));
      try (PreparedStatement ps = c.prepareStatement("SELECT user_id, id, n FROM " + SH + " WHERE " + SH_RANGE
          + " ORDER BY n DESC, user_id, id LIMIT ? OFFSET ?")) {
        for (int i = 0; i < 7; i++) {
          ps.setInt(1, 5);
          ps.setInt(2, i);
          List<String> exp5 = new ArrayList<>();
          for (long[] r : top.subList(i, i + 5)) exp5.add(r[0] + "," + r[1] + "," + r[2]);
          try (ResultSet rs = ps.executeQuery()) {
            eq(rows(rs), exp5, "ORDER BY LIMIT/OFFSET " + i);
          }
        }
      }
      // GROUP BY the key with aggregates
      java.util.TreeMap<Long, long[]> g = new java.util.TreeMap<>();
      for (long[] r : all) {
        long[] v = g.computeIfAbsent(r[0], k -> new long[] {0, 0, Long.MAX_VALUE, Long.MIN_VALUE});
        v[0]++;
        v[1] += r[2];
        v[2] = Math.min(v[2], r[2]);
        v[3] = Math.max(v[3], r[2]);
      }
      List<String> eg = new ArrayList<>();
      for (var e : g.entrySet()) {
        long[] v = e.getValue();
        eg.add(e.getKey() + "," + v[0] + "," + v[1] + "," + v[2] + "," + v[3]);
      }
      eq(rows(c, "SELECT user_id, count(*), sum(n), min(n), max(n) FROM " + SH + " WHERE " + SH_RANGE
          + " GROUP BY user_id ORDER BY user_id"), eg, "GROUP BY user_id");
      try (PreparedStatement ps = c.prepareStatement("SELECT user_id, count(*), sum(n), min(n), max(n) FROM " + SH
          + " WHERE user_id BETWEEN ? AND ? GROUP BY user_id ORDER BY user_id")) {
        for (int i = 0; i < 7; i++) {
          ps.setLong(1, SH_LO);
          ps.setLong(2, SH_HI);
          try (ResultSet rs = ps.executeQuery()) {
            eq(rows(rs), eg, "GROUP BY user_id, prepared " + i);
          }
        }
      }
      // a keyless read inside a transaction: merged, and after a write it sees the write, as
      // on one PostgreSQL; rolled back, the write is gone
      c.setAutoCommit(false);
      try (Statement s = c.createStatement()) {
        s.executeQuery("SELECT name FROM " + SH + " WHERE user_id = " + SH_LO + " AND id = 2").close();
        eq(one(c, "SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), cnt, "fan-out read in a transaction");
        s.executeUpdate("INSERT INTO " + SH + " (id, user_id, name, n) VALUES (9999, " + SH_LO + ", 'tx', 0)");
        eq(one(c, "SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), cnt + 1,
            "fan-out read after a write in a transaction sees it");
      }
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), cnt, "rolled back");
    }
  }

  static void tShMergedBinary() throws Exception {
    // pgjdbc's defaults (binaryTransfer=true): once server-prepared (prepareThreshold), a
    // statement's results are asked in binary format; pgproxy encodes the merged values, so
    // every execution answers right (count, sum, avg, ORDER BY ... LIMIT with text and int columns)
    long cnt = shN.size();
    long sum = 0;
    for (long[] r : shN.values()) sum += r[2];
    try (Connection c = connect();
        PreparedStatement ps = c.prepareStatement("SELECT count(*), sum(n), avg(n), max(name) FROM " + SH + " WHERE user_id BETWEEN ? AND ?");
        PreparedStatement top = c.prepareStatement("SELECT user_id, n FROM " + SH + " WHERE user_id BETWEEN ? AND ? ORDER BY user_id, id LIMIT 3")) {
      for (int i = 0; i < 8; i++) {
        ps.setLong(1, SH_LO);
        ps.setLong(2, SH_HI);
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          eq(rs.getLong(1), cnt, "count, execution " + i);
          eq(rs.getLong(2), sum, "sum, execution " + i);
          eq(rs.getBigDecimal(3).setScale(6, java.math.RoundingMode.HALF_UP),
              new java.math.BigDecimal(sum).divide(new java.math.BigDecimal(cnt), 6, java.math.RoundingMode.HALF_UP), "avg, execution " + i);
        }
        top.setLong(1, SH_LO);
        top.setLong(2, SH_HI);
        int rows = 0;
        try (ResultSet rs = top.executeQuery()) {
          long prev = Long.MIN_VALUE;
          while (rs.next()) {
            long u = rs.getLong(1);
            if (u < prev) throw new AssertionError("ORDER BY user_id: " + u + " after " + prev);
            prev = u;
            rows++;
          }
        }
        eq(rows, 3, "ORDER BY ... LIMIT 3, execution " + i);
      }
    }
  }

  /** Adds one row (id, user, name, n) to the batch of {@code ins}. */
  static void addRow(PreparedStatement ins, long id, long user, String name, int n) throws SQLException {
    ins.setLong(1, id);
    ins.setLong(2, user);
    ins.setString(3, name);
    ins.setInt(4, n);
    ins.addBatch();
  }

  static void tShBatch() throws Exception {
    long[] ab = shTwoUsers();
    try (Connection c = connect();
        PreparedStatement ins = c.prepareStatement("INSERT INTO " + SH + " (id, user_id, name, n) VALUES (?, ?, ?, ?)")) {
      // a batch for one user: one shard
      for (int i = 20; i < 25; i++) addRow(ins, i, ab[0], "batch", i);
      int[] counts = ins.executeBatch();
      eq(counts.length, 5, "batch counts");
      for (int i = 20; i < 25; i++) shPut(ab[0], i, "batch", i);
      shCheckAll(c, "after the one-user batch");
      // a batch for users on two shards (one request, several Executes, one Sync): pgproxy
      // runs it shard by shard as one transaction (SHARDING.md)
      for (int j = 0; j < 2; j++) addRow(ins, 30, ab[j], "batch2", 30);
      eq(ins.executeBatch().length, 2, "two-shard batch counts");
      for (int j = 0; j < 2; j++) shPut(ab[j], 30, "batch2", 30);
      shCheckAll(c, "after the two-shard batch");
      // a duplicate in its last row: 23505, and nothing of the batch stays on either shard
      for (int j = 0; j < 2; j++) addRow(ins, 31, ab[j], "batch3", 31);
      addRow(ins, 30, ab[1], "dup", 0);
      try {
        ins.executeBatch();
        throw new AssertionError("duplicate in a two-shard batch not reported");
      } catch (java.sql.BatchUpdateException e) {
        SQLException n = e.getNextException() != null ? e.getNextException() : e;
        eq(n.getSQLState(), "23505", "two-shard batch with a duplicate (" + n.getMessage() + ")");
      }
      shCheckAll(c, "after the failed two-shard batch");
      // autocommit off: pgjdbc sends BEGIN with the batch; rolled back, then committed
      c.setAutoCommit(false);
      for (String end : new String[] {"rollback", "commit"}) {
        for (int j = 0; j < 2; j++) addRow(ins, 32, ab[j], end, 32);
        eq(ins.executeBatch().length, 2, "two-shard batch in a transaction (" + end + ")");
        if (end.equals("commit")) {
          c.commit();
          for (int j = 0; j < 2; j++) shPut(ab[j], 32, "commit", 32);
        } else {
          c.rollback();
        }
      }
      c.setAutoCommit(true);
      shCheckAll(c, "after the two-shard batches in transactions");
    }
  }

  static void tShCopy() throws Exception {
    // CopyManager into the sharded table: each row to its user's shard, all or nothing; COPY
    // TO of the whole table puts every shard's rows together
    try (Connection c = connect(); Statement s = c.createStatement()) {
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      String copy = "COPY " + SH + " (id, user_id, name, n) FROM STDIN";
      StringBuilder sb = new StringBuilder();
      for (long u = SH_LO; u <= SH_HI; u++) sb.append("4\t").append(u).append("\tcopied\t4\n");
      eq(cm.copyIn(copy, new StringReader(sb.toString())), (long) SH_USERS, "copyIn count");
      for (long u = SH_LO; u <= SH_HI; u++) shPut(u, 4, "copied", 4);
      for (String shard : new String[] {"s0", "s1"}) {
        for (String u : rows(c, "/* pgproxy: shard=" + shard + " */ SELECT user_id FROM " + SH
            + " WHERE " + SH_RANGE + " AND id = 4")) {
          eq(shShard.get(Long.parseLong(u)), shard, "copied row of user " + u);
        }
      }
      String dup = "5\t" + SH_LO + "\tnew\t5\n4\t" + SH_HI + "\tdup\t0\n";
      expectState(() -> cm.copyIn(copy, new StringReader(dup)), "23505", "duplicate in a COPY");
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      cm.copyOut("COPY " + SH + " (user_id, id) TO STDOUT", out);
      long mine = java.util.Arrays.stream(out.toString(StandardCharsets.UTF_8).split("\n"))
          .filter(l -> !l.isEmpty()).map(l -> l.split("\t"))
          .filter(f -> Long.parseLong(f[0]) >= SH_LO && Long.parseLong(f[0]) <= SH_HI && f[1].equals("4"))
          .count();
      eq(mine, (long) SH_USERS, "COPY TO: every copied row once");
      shCheckAll(c, "after COPY");
    }
  }

  static void tShHints() throws Exception {
    long[] ab = shTwoUsers();
    long onA = shN.values().stream().filter(r -> shShard.get(r[0]).equals(shShard.get(ab[0]))).count();
    try (Connection c = connect(); Statement s = c.createStatement()) {
      eq(one(c, "/* pgproxy: shard_key=" + ab[0] + " */ SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), onA, "comment hint");
      s.execute("SET pgproxy.shard_key = " + ab[0]);
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM " + SH + " WHERE user_id BETWEEN ? AND ?")) {
        for (int i = 0; i < 7; i++) {
          ps.setLong(1, SH_LO);
          ps.setLong(2, SH_HI);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getLong(1), onA, "SET pgproxy.shard_key " + i);
          }
        }
      }
      eq(one(c, "SELECT count(*) FROM " + SH + " WHERE user_id = " + ab[1]), usersRows(ab[1]), "own key under SET");
      s.execute("RESET pgproxy.shard_key");
      eq(one(c, "SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), (long) shN.size(), "after RESET");
    }
  }

  static void tShRefused() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + SH + " (id, name, n) VALUES (?, ?, ?)")) {
        ps.setLong(1, 99);
        ps.setString(2, "nokey");
        ps.setInt(3, 1);
        expectState(ps::executeUpdate, "0A000", "INSERT without the key");
      }
      expectState(() -> s.executeQuery("SELECT user_id, row_number() OVER (ORDER BY n) FROM " + SH + " WHERE " + SH_RANGE),
          "0A000", "window function");
      eq(one(c, "SELECT 1"), 1, "usable after the refusal");
      try (PreparedStatement ps = c.prepareStatement("SELECT string_agg(name, ',') FROM " + SH + " WHERE user_id > ?")) {
        for (int i = 0; i < 6; i++) {
          ps.setLong(1, SH_LO);
          expectState(ps::executeQuery, "0A000", "string_agg, prepared " + i);
        }
      }
      eq(one(c, "SELECT count(*) FROM " + SH + " WHERE user_id = " + (SH_LO + 1)), usersRows(SH_LO + 1), "point read after");
      shCheckAll(c, "nothing stored by refused statements");
    }
  }

  static void tShInt4Key() throws Exception {
    // the key bound with setInt (an int4 parameter), which PostgreSQL casts to the bigint column
    try (Connection c = connect();
        PreparedStatement ins = c.prepareStatement("INSERT INTO " + SH + " (id, user_id, name, n) VALUES (?, ?, ?, ?)");
        PreparedStatement sel = c.prepareStatement("SELECT name FROM " + SH + " WHERE user_id = ?")) {
      for (int i = 1; i <= 6; i++) {
        ins.setInt(1, i);
        ins.setInt(2, (int) SH_SMALL);
        ins.setString(3, "int4");
        ins.setInt(4, i);
        eq(ins.executeUpdate(), 1, "insert " + i);
        sel.setInt(1, (int) SH_SMALL);
        try (ResultSet rs = sel.executeQuery()) {
          eq(rows(rs).size(), i, "read back " + i);
        }
      }
    } finally {
      try (Connection c = connect(); Statement s = c.createStatement()) {
        s.executeUpdate("DELETE FROM " + SH + " WHERE user_id = " + SH_SMALL);
      }
    }
  }

  static void tShCleanup() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      eq(s.executeUpdate("DELETE FROM " + SH + " WHERE " + SH_RANGE), shN.size(), "rows deleted");
      eq(one(c, "SELECT count(*) FROM " + SH + " WHERE " + SH_RANGE), 0L, "none left");
    }
  }

  public static void main(String[] args) {
    System.out.println("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ", java "
        + System.getProperty("java.version") + ", target " + TARGET + " " + HOST + ":" + PORT);
    check("connect (SCRAM)", PgjdbcTest::tConnect);
    check("simple queries (multiple results)", PgjdbcTest::tSimple);
    check("parameters of many types", PgjdbcTest::tTypes);
    check("prepared statements past prepareThreshold, batches", PgjdbcTest::tPrepared);
    check("transactions: commit, rollback, savepoint", PgjdbcTest::tTransactions);
    check("error in transaction, rollback, continue", PgjdbcTest::tErrorInTx);
    check("COPY (CopyManager)", PgjdbcTest::tCopy);
    check("LISTEN/NOTIFY", PgjdbcTest::tListenNotify);
    check("settings (startup, SET, setClientInfo)", PgjdbcTest::tSettings);
    check("12 concurrent connections, prepared statements", PgjdbcTest::tConcurrency, 120);
    check("setFetchSize in a transaction (portals)", PgjdbcTest::tCursor);
    check("query cancellation (setQueryTimeout, cancel())", PgjdbcTest::tCancel);
    check("batches (reWriteBatchedInserts off/on), getGeneratedKeys", PgjdbcTest::tBatchKeys, 120);
    check("autosave=always/conservative: errors inside a transaction", PgjdbcTest::tAutosave);
    check("savepoints: named, release, rollback after error", PgjdbcTest::tSavepoints);
    check("CallableStatement: functions, OUT parameters, CALL", PgjdbcTest::tCallable);
    check("DatabaseMetaData, ResultSetMetaData, isValid", PgjdbcTest::tMetaData);
    check("prepareThreshold 0/-1, preferQueryMode, binaryTransfer", PgjdbcTest::tQueryModes, 120);
    check("setFetchSize with writes and batches between fetches", PgjdbcTest::tFetchWithWrites, 120);
    check("timestamps, TimeZone, read-only transactions", PgjdbcTest::tReadOnlyTimestamps);
    check("COPY in a transaction, between statements, savepoint", PgjdbcTest::tCopyInTx);
    check("autosave=conservative: statement invalidated by ALTER in a transaction", PgjdbcTest::tConservativeAlter);
    check("Statement batch, 200000 rows by fetch size, errors mid-fetch and mid-COPY", PgjdbcTest::tStatementBatch, 120);
    check("BEGIN/COMMIT/SET LOCAL as SQL in autocommit mode", PgjdbcTest::tManualTx);
    if (TARGET.equals("sharded")) {
      check("sharded table: inserts by key (prepared), placement on both shards", PgjdbcTest::tShSetup);
      if (shShard.size() == SH_USERS) {
        check("sharded table: point reads by key, server-prepared", PgjdbcTest::tShPointReads);
        check("sharded table: UPDATE / DELETE by key", PgjdbcTest::tShUpdateDelete);
        check("sharded table: transaction on one user, commit and rollback", PgjdbcTest::tShTxOneUser);
        check("sharded table: transactions on two shards (2PC), commit and rollback", PgjdbcTest::tShTxTwoShards);
        check("sharded table: batches for one user and across shards (atomic, in transactions)", PgjdbcTest::tShBatch);
        check("sharded table: keyless reads merged (count, sum, avg, ORDER BY LIMIT, GROUP BY)", PgjdbcTest::tShMergedReads);
        check("sharded table: keyless prepared reads with binaryTransfer, past prepareThreshold", PgjdbcTest::tShMergedBinary);
        check("sharded table: CopyManager copyIn rows to their shards, copyOut of every shard", PgjdbcTest::tShCopy);
        check("sharded table: shard_key comment hint, SET pgproxy.shard_key", PgjdbcTest::tShHints);
        check("sharded table: refused with 0A000 (no key on INSERT, window function, string_agg)", PgjdbcTest::tShRefused);
      }
      check("sharded table: key bound with setInt (int4 parameter)", PgjdbcTest::tShInt4Key);
      check("sharded table: cleanup", PgjdbcTest::tShCleanup);
    }
    check("cleanup", PgjdbcTest::tCleanup);
    System.out.printf("pgjdbc %s: %d passed, %d failed%n", TARGET, passed, failed);
    System.out.flush();
    System.exit(failed > 0 || passed == 0 ? 1 : 0);
  }
}
