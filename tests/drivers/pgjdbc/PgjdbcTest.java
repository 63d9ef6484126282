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

  static void tCleanup() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + T);
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
    check("cleanup", PgjdbcTest::tCleanup);
    System.out.printf("pgjdbc %s: %d passed, %d failed%n", TARGET, passed, failed);
    System.out.flush();
    System.exit(failed > 0 || passed == 0 ? 1 : 0);
  }
}
