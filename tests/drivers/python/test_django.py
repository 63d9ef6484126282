"""Django's ORM through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

What a new user of pgproxy would run first: a small Django app (its models in a temporary
directory, migrations made with makemigrations and applied with migrate), CRUD, bulk_create,
select_related / prefetch_related, atomic with savepoints, aggregates, get_or_create,
iterator() with and without server-side cursors, JSONField, persistent connections. Every check
reads the values back.

The program runs twice: with psycopg 3 (Django's choice when it is installed), then re-runs
itself in a child process with psycopg 3 hidden, so that Django uses psycopg2.

Prints one PASS/FAIL line per check; exits 1 if any check failed.
Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
Needs: django>=5.2 (CompositePrimaryKey for the sharded table), psycopg[binary], psycopg2-binary.

pgproxy's pool size in scripts/test-drivers is 2: in session mode a client connection holds a
server connection, so no check holds more than two at once (connections are closed after each).
"""

import datetime as dt
import decimal
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

if "--psycopg2" in sys.argv:
    sys.modules["psycopg"] = None  # Django falls back to psycopg2

from common import DB, HOST, PASSWORD, PORT, TAG, TARGET, USER, Checks, eq  # noqa: E402

LABEL = f"dj_{TAG}"  # app label: table names and django_migrations rows of this run
WORK = tempfile.mkdtemp(prefix="pgproxy-django-")

# ------------------------------------------------------------------ the app, on disk

MODELS = '''
import uuid
from django.db import models
from django.contrib.postgres.fields import ArrayField


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField(blank=True)
    joined = models.DateTimeField(auto_now_add=True)
    uid = models.UUIDField(default=uuid.uuid4, unique=True)
    rating = models.DecimalField(max_digits=8, decimal_places=3, default=0)

    class Meta:
        ordering = ["id"]


class Tag(models.Model):
    name = models.CharField(max_length=30, unique=True)


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    published = models.DateTimeField(null=True)
    data = models.JSONField(default=dict)
    tags = models.ManyToManyField(Tag, related_name="books")
    keywords = ArrayField(models.CharField(max_length=20), default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["author", "title"], name="%(app_label)s_book_uq")]


class Counter(models.Model):
    key = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)


class Contact(models.Model):
    """drv_contacts, sharded by user_id on the sharded target (created by SQL, not migrations)."""
    pk = models.CompositePrimaryKey("user_id", "id")
    id = models.BigIntegerField()
    user_id = models.BigIntegerField()
    name = models.TextField(null=True)
    n = models.IntegerField(null=True)

    class Meta:
        managed = False
        db_table = "drv_contacts"
'''

APP = os.path.join(WORK, "drvapp")
os.makedirs(os.path.join(APP, "migrations"))
for f, text in {
    "__init__.py": "",
    "migrations/__init__.py": "",
    "models.py": MODELS,
    "apps.py": "from django.apps import AppConfig\n\n\nclass DrvConfig(AppConfig):\n"
               f"    name = 'drvapp'\n    label = {LABEL!r}\n    default_auto_field = 'django.db.models.BigAutoField'\n",
}.items():
    with open(os.path.join(APP, f), "w") as fh:
        fh.write(text)
sys.path.insert(0, WORK)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

BASE_DB = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": DB, "USER": USER, "PASSWORD": PASSWORD, "HOST": HOST, "PORT": str(PORT),
    "OPTIONS": {"connect_timeout": 10},
    "CONN_MAX_AGE": 0,
    "TEST": {"NAME": DB},
}
settings.configure(
    DEBUG=False,
    DATABASES={
        "default": dict(BASE_DB),
        "nossc": dict(BASE_DB, DISABLE_SERVER_SIDE_CURSORS=True),
        "persistent": dict(BASE_DB, CONN_MAX_AGE=300, CONN_HEALTH_CHECKS=True),
    },
    INSTALLED_APPS=["django.contrib.postgres", "drvapp.apps.DrvConfig"],
    USE_TZ=True,
    TIME_ZONE="Europe/Paris",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection, connections, transaction  # noqa: E402
from django.db.models import Avg, Count, F, Max, Q, Sum, Value  # noqa: E402
from django.db.models.functions import Concat  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from drvapp.models import Author, Book, Contact, Counter, Tag  # noqa: E402

BACKEND = "psycopg2" if connection.Database.__name__ == "psycopg2" else "psycopg"
C = Checks(f"django-{BACKEND}")


def close_all():
    for c in connections.all():
        c.close()


def sqlstate(e):
    c = e.__cause__ or e
    return getattr(c, "sqlstate", None) or getattr(c, "pgcode", None)


def sqlstates(e):
    """The SQLSTATEs along an exception's chain (psycopg2's named cursors: a failed DECLARE is
    followed by a failed CLOSE, whose error Django raises, with the first one as its context)."""
    out, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        st = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if st:
            out.append(st)
        e = e.__cause__ or e.__context__
    return out


def expect(fn, exc, code, what):
    try:
        fn()
    except exc as e:
        eq(sqlstate(e), code, f"{what}: SQLSTATE ({e})")
        return e
    raise AssertionError(f"{what}: no {exc.__name__}")


def known_limit(fn):
    """A check that meets a documented pgproxy limit on the sharded target (docs/SHARDING.md:
    INSERT ... SELECT into a sharded table, or into a table with a serial column written on
    several shards, is refused): there, a 0A000 refusal naming it is accepted and noted;
    anything else must pass as usual (on replicated shards pgproxy gives each row its id)."""
    def run():
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            if TARGET == "sharded" and sqlstate(e) == "0A000" and "INSERT" in str(e) \
                    and "SELECT into" in str(e):
                print(f"NOTE django-{BACKEND} {TARGET}: {fn.__name__}: known limit, refused with 0A000",
                      flush=True)
                return
            raise
    run.__name__ = fn.__name__
    return run


def checked(fn):
    """Every check closes its connections at the end (pgproxy's pool size is 2)."""
    def run():
        try:
            fn()
        finally:
            close_all()
    return run


# ------------------------------------------------------------------ checks

def t_connect():
    with connection.cursor() as cur:
        cur.execute("SELECT current_user, current_setting('TimeZone')")
        eq(cur.fetchone(), (USER, "UTC"), "user and the time zone Django sets (UTC with USE_TZ)")
        cur.execute("SELECT %s::int + %s, %s::text", [40, 2, "x'y"])
        eq(cur.fetchone(), (42, "x'y"), "parameters")
    assert connection.pg_version >= 100000, connection.pg_version
    eq(connection.get_autocommit(), True, "autocommit")


def t_migrate():
    call_command("makemigrations", LABEL, verbosity=0)
    assert os.path.exists(os.path.join(APP, "migrations", "0001_initial.py")), "makemigrations"
    call_command("migrate", LABEL, verbosity=0)
    tables = set(connection.introspection.table_names())
    for m in (Author, Book, Tag, Counter, Book.tags.through):
        assert m._meta.db_table in tables, f"{m._meta.db_table} not created: {sorted(tables)[:20]}"
    with connection.cursor() as cur:
        cur.execute("SELECT name FROM django_migrations WHERE app = %s", [LABEL])
        eq(cur.fetchall(), [("0001_initial",)], "django_migrations")
        cons = connection.introspection.get_constraints(cur, Book._meta.db_table)
    assert f"{LABEL}_book_uq" in cons and cons[f"{LABEL}_book_uq"]["unique"], sorted(cons)
    fks = [c for c in cons.values() if c["foreign_key"]]
    eq([c["foreign_key"] for c in fks], [(Author._meta.db_table, "id")], "foreign key")
    # a second migration: add a column (makemigrations sees a model change only via a file
    # edit; here a RunSQL-free AddField by hand through the schema editor)
    from django.db import models as m
    f = m.CharField(max_length=10, null=True)
    f.set_attributes_from_name("extra")
    with connection.schema_editor() as se:
        se.add_field(Counter, f)
        se.remove_field(Counter, f)
    eq([c.name for c in connection.introspection.get_table_description(connection.cursor(),
                                                                         Counter._meta.db_table)],
       ["id", "key", "value"], "schema editor add/remove field")


def t_crud():
    a = Author.objects.create(name="crud", email="c@x", rating=decimal.Decimal("4.125"))
    assert a.pk, "pk"
    b = Author.objects.get(pk=a.pk)
    eq((b.name, b.email, b.rating, b.uid), ("crud", "c@x", decimal.Decimal("4.125"), a.uid), "get")
    assert abs(b.joined - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5), b.joined
    eq(b.joined, a.joined, "auto_now_add round trip (microseconds, tz)")
    b.email = "d@x"
    b.save()
    eq(Author.objects.filter(email="d@x").count(), 1, "save() update")
    eq(Author.objects.filter(pk=a.pk).update(rating=F("rating") * 2), 1, "update() count")
    b.refresh_from_db()
    eq(b.rating, decimal.Decimal("8.250"), "F expression")
    eq(Author.objects.filter(name__startswith="cr").exists(), True, "exists")
    eq(Author.objects.filter(name="nobody").first(), None, "first() of nothing")
    for i in range(12):
        Author.objects.create(name=f"page{i:02d}")
    eq(list(Author.objects.filter(name__startswith="page").order_by("-name")
            .values_list("name", flat=True)[3:6]), ["page08", "page07", "page06"], "slicing (LIMIT/OFFSET)")
    eq(Author.objects.filter(Q(name="page01") | Q(name="page02")).count(), 2, "Q OR")
    n, per = Author.objects.filter(name__startswith="page").delete()
    eq((n, per), (12, {f"{LABEL}.Author": 12}), "delete() count")
    b.delete()
    eq(Author.objects.filter(pk=a.pk).exists(), False, "deleted")


def t_bulk_unnest():
    """bulk_create of a model with plain columns only: Django 5.2 sends
    INSERT INTO t (cols) SELECT * FROM UNNEST((%s)::varchar[], ...) RETURNING t.id."""
    with CaptureQueriesContext(connection) as q:
        authors = Author.objects.bulk_create([Author(name=f"bulk{i}", rating=i) for i in range(50)])
    ins = [x["sql"] for x in q.captured_queries if x["sql"].startswith("INSERT")]
    assert len(ins) == 1 and "UNNEST" in ins[0], ins
    ids = [x.pk for x in authors]
    assert all(ids), f"bulk_create returned no ids: {ids[:5]}"
    eq(len(set(ids)), 50, "distinct ids")
    eq(dict(Author.objects.filter(name__startswith="bulk").values_list("name", "id")),
       {x.name: x.pk for x in authors}, "returned ids are the stored ones")
    # ignore_conflicts / update_conflicts in the same form
    Author.objects.bulk_create([Author(name="bulk1"), Author(name="bulk_new")], ignore_conflicts=True)
    eq(Author.objects.filter(name__startswith="bulk").count(), 51, "ignore_conflicts")
    Counter.objects.bulk_create([Counter(key="a", value=1), Counter(key="b", value=2)])
    Counter.objects.bulk_create([Counter(key="a", value=10), Counter(key="c", value=3)], update_conflicts=True,
                                unique_fields=["key"], update_fields=["value"])
    eq(dict(Counter.objects.values_list("key", "value")), {"a": 10, "b": 2, "c": 3}, "update_conflicts")
    Author.objects.filter(name__startswith="bulk").delete()
    Counter.objects.all().delete()


def t_bulk():
    """bulk_create in the INSERT ... VALUES (...), (...) RETURNING form (a model with an ArrayField,
    which Django does not UNNEST), bulk_update, ON CONFLICT, delete() counts with cascades."""
    authors = [Author.objects.create(name=f"vb{i}") for i in range(5)]
    ids = [a.pk for a in authors]
    with CaptureQueriesContext(connection) as q:
        books = Book.objects.bulk_create([Book(author=authors[i % 5], title=f"t{i}", pages=i,
                                               price=decimal.Decimal(i) / 4,
                                               data={"i": i, "tags": ["a", "b"] if i % 2 else []},
                                               keywords=[f"k{i}"]) for i in range(40)])
    ins = [x["sql"] for x in q.captured_queries if x["sql"].startswith("INSERT")]
    assert len(ins) == 1 and "UNNEST" not in ins[0] and "RETURNING" in ins[0], ins
    assert all(b.pk for b in books), "book ids"
    eq(dict(Book.objects.filter(author_id__in=ids).values_list("title", "id")), {b.title: b.pk for b in books},
       "returned ids are the stored ones")
    for b in books[:10]:
        b.pages += 1000
    eq(Book.objects.bulk_update(books[:10], ["pages"]), 10, "bulk_update count")
    eq(Book.objects.filter(pages__gte=1000).count(), 10, "bulk_update stored")
    Book.objects.bulk_create([Book(author=authors[0], title="t0", price=1), Book(author=authors[0], title="new", price=1)],
                             ignore_conflicts=True)
    eq(Book.objects.filter(author_id__in=ids).count(), 41, "ignore_conflicts")
    Book.objects.bulk_create([Book(author=authors[0], title="t0", price=1, pages=-1),
                              Book(author=authors[0], title="new2", price=1, pages=-2)],
                             update_conflicts=True, unique_fields=["author", "title"], update_fields=["pages"])
    eq(dict(Book.objects.filter(author=authors[0], title__in=["t0", "new2"]).values_list("title", "pages")),
       {"t0": -1, "new2": -2}, "update_conflicts")
    # delete with cascade: the count includes the books
    n, per = Author.objects.filter(pk__in=ids).delete()
    eq(per, {f"{LABEL}.Book": 42, f"{LABEL}.Author": 5}, "cascade delete counts")
    eq(n, 47, "delete total")


def t_related():
    tags = [Tag.objects.create(name=f"tag{i}") for i in range(4)]
    for i in range(6):
        a = Author.objects.create(name=f"rel{i}")
        for k in range(3):
            b = Book.objects.create(author=a, title=f"r{i}-{k}", price=k, pages=k)
            for t in tags[: k + 1]:
                b.tags.add(t)  # one row at a time: see t_m2m_set
    with CaptureQueriesContext(connection) as q:
        books = list(Book.objects.select_related("author").filter(title__startswith="r").order_by("title"))
        names = [(b.title, b.author.name) for b in books]
    eq(len(q.captured_queries), 1, "select_related: one query")
    eq(names[:4], [("r0-0", "rel0"), ("r0-1", "rel0"), ("r0-2", "rel0"), ("r1-0", "rel1")], "select_related")
    with CaptureQueriesContext(connection) as q:
        authors = list(Author.objects.filter(name__startswith="rel").prefetch_related("books__tags"))
        got = {a.name: sorted((b.title, len(b.tags.all())) for b in a.books.all()) for a in authors}
    eq(len(q.captured_queries), 3, "prefetch_related: three queries")
    eq(got["rel3"], [("r3-0", 1), ("r3-1", 2), ("r3-2", 3)], "prefetch_related")
    # reverse / m2m filters with distinct
    eq(Author.objects.filter(books__tags__name="tag2").distinct().count(), 6, "m2m filter distinct")
    eq(Tag.objects.annotate(nb=Count("books")).order_by("name").values_list("name", "nb")[0], ("tag0", 18),
       "annotate over m2m")
    Author.objects.filter(name__startswith="rel").delete()
    Tag.objects.all().delete()


def t_m2m_set():
    """ManyToMany add()/set() of several objects: a bulk_create of the through model (Django 5.2:
    INSERT ... SELECT * FROM UNNEST(...) into a table with a serial id)."""
    a = Author.objects.create(name="m2m")
    b = Book.objects.create(author=a, title="m2m", price=1)
    tags = [Tag.objects.create(name=f"m2m{i}") for i in range(3)]
    b.tags.set(tags)
    eq(sorted(b.tags.values_list("name", flat=True)), ["m2m0", "m2m1", "m2m2"], "set()")
    b.tags.remove(tags[0])
    b.tags.add(tags[0], Tag.objects.create(name="m2m3"))
    eq(Book.tags.through.objects.filter(book=b).count(), 4, "add() of two")
    a.delete()
    Tag.objects.filter(name__startswith="m2m").delete()


def t_atomic():
    with transaction.atomic():
        Author.objects.create(name="outer")
        try:
            with transaction.atomic():
                Author.objects.create(name="inner")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        with transaction.atomic():
            Author.objects.create(name="inner2")
            with transaction.atomic():
                Author.objects.create(name="inner3")
        # IntegrityError inside a savepoint: the outer transaction goes on
        try:
            with transaction.atomic():
                Author.objects.create(name="outer")
            raise AssertionError("no IntegrityError")
        except IntegrityError as e:
            eq(sqlstate(e), "23505", "unique violation")
        eq(sorted(Author.objects.filter(name__in=["outer", "inner", "inner2", "inner3"])
                  .values_list("name", flat=True)), ["inner2", "inner3", "outer"], "inside")
    eq(sorted(Author.objects.filter(name__in=["outer", "inner", "inner2", "inner3"]).values_list("name", flat=True)),
       ["inner2", "inner3", "outer"], "committed")
    # the whole block rolled back
    try:
        with transaction.atomic():
            Author.objects.create(name="gone")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    eq(Author.objects.filter(name="gone").exists(), False, "rolled back")
    # set_rollback, on_commit
    done = []
    with transaction.atomic():
        Author.objects.create(name="marked")
        transaction.on_commit(lambda: done.append(1))
        transaction.set_rollback(True)
    eq((Author.objects.filter(name="marked").exists(), done), (False, []), "set_rollback")
    with transaction.atomic():
        transaction.on_commit(lambda: done.append(2))
    eq(done, [2], "on_commit")
    # IntegrityErrors with their SQLSTATE, outside atomic (autocommit)
    expect(lambda: Book.objects.create(author_id=10**12, title="x", price=1), IntegrityError, "23503", "fk")
    a = Author.objects.get(name="outer")
    Book.objects.create(author=a, title="same", price=1)
    expect(lambda: Book.objects.create(author=a, title="same", price=1), IntegrityError, "23505", "composite unique")
    from django.db import DataError
    expect(lambda: Book.objects.create(author=a, title="x" * 300, price=1), DataError, "22001", "too long")
    # select_for_update in a transaction
    with transaction.atomic():
        x = Author.objects.select_for_update().get(name="outer")
        x.email = "locked@x"
        x.save()
    eq(Author.objects.get(name="outer").email, "locked@x", "select_for_update")
    Author.objects.filter(name__in=["outer", "inner2", "inner3"]).delete()


def t_aggregates():
    a1 = Author.objects.create(name="agg1")
    a2 = Author.objects.create(name="agg2")
    for i in range(10):
        Book.objects.create(author=a1 if i < 6 else a2, title=f"g{i}", pages=i * 10,
                            price=decimal.Decimal(i) + decimal.Decimal("0.5"))
    r = Book.objects.filter(title__startswith="g").aggregate(n=Count("id"), s=Sum("pages"), a=Avg("pages"),
                                                             m=Max("price"), sp=Sum("price"))
    eq(r, {"n": 10, "s": 450, "a": 45.0, "m": decimal.Decimal("9.50"), "sp": decimal.Decimal("50.00")}, "aggregate")
    got = list(Author.objects.filter(name__startswith="agg").annotate(nb=Count("books"), tp=Sum("books__pages"))
               .order_by("name").values_list("name", "nb", "tp"))
    eq(got, [("agg1", 6, 150), ("agg2", 4, 300)], "annotate")
    eq(list(Book.objects.filter(title__startswith="g").values_list("author__name", flat=True).distinct()
            .order_by("author__name")), ["agg1", "agg2"], "distinct")
    eq(Book.objects.filter(title__startswith="g", pages__gt=F("price") * 10).count(), 0, "F in filter")
    eq(Book.objects.filter(title__startswith="g").update(pages=F("pages") + 1), 10, "F update count")
    eq(Book.objects.filter(title__startswith="g").aggregate(s=Sum("pages"))["s"], 460, "F update")
    eq(Author.objects.filter(name__startswith="agg").annotate(nb=Count("books")).filter(nb__gt=5).count(), 1,
       "HAVING")
    Author.objects.filter(name__startswith="agg").delete()


def t_get_or_create():
    c, created = Counter.objects.get_or_create(key="goc", defaults={"value": 1})
    eq((created, c.value), (True, 1), "created")
    c2, created = Counter.objects.get_or_create(key="goc", defaults={"value": 2})
    eq((created, c2.pk, c2.value), (False, c.pk, 1), "got")
    c3, created = Counter.objects.update_or_create(key="goc", defaults={"value": 5})
    eq((created, c3.pk, Counter.objects.get(key="goc").value), (False, c.pk, 5), "updated")
    c4, created = Counter.objects.update_or_create(key="uoc", defaults={"value": 7}, create_defaults={"value": 8})
    eq((created, Counter.objects.get(key="uoc").value), (True, 8), "update_or_create created")
    # inside atomic (get_or_create uses a savepoint for the INSERT)
    with transaction.atomic():
        _, created = Counter.objects.get_or_create(key="goc2")
        _, created2 = Counter.objects.get_or_create(key="goc2")
    eq((created, created2), (True, False), "in atomic")
    Counter.objects.filter(key__in=["goc", "uoc", "goc2"]).delete()


def held_cursors(alias):
    with connections[alias].cursor() as cur:
        cur.execute("SELECT is_holdable FROM pg_cursors WHERE name LIKE '_django_curs_%%'")
        return [r[0] for r in cur.fetchall()]


def t_iterator():
    with transaction.atomic():  # not bulk_create: see t_bulk_unnest
        for i in range(1500):
            Author.objects.create(name=f"it{i:04d}")
    for alias in ("default", "nossc"):
        ssc = alias == "default"
        qs = Author.objects.using(alias).filter(name__startswith="it").order_by("name")
        # outside a transaction: Django declares the cursor WITH HOLD
        it = qs.iterator(chunk_size=100)
        first = [next(it).name for _ in range(150)]
        eq(held_cursors(alias), [True] if ssc else [], f"{alias}: open WITH HOLD cursors")
        # other queries on the same connection while the cursor is open, autocommit
        Counter.objects.using(alias).create(key=f"iter-{alias}", value=1)
        rest = [a.name for a in it]
        eq(first + rest, [f"it{i:04d}" for i in range(1500)], f"{alias}: iterator outside atomic")
        eq(held_cursors(alias), [], f"{alias}: cursor closed after the iteration")
        # inside atomic: a cursor without hold
        with transaction.atomic(using=alias):
            it = qs.values_list("name", flat=True).iterator(chunk_size=333)
            got = [next(it) for _ in range(10)]
            eq(held_cursors(alias), [False] if ssc else [], f"{alias}: cursor in a transaction")
            got += list(it)
        eq(len(got), 1500, f"{alias}: iterator in atomic")
        # an iterator left unfinished, then the connection is reused
        it = qs.iterator(chunk_size=50)
        next(it)
        del it
        eq(Author.objects.using(alias).filter(name="it0007").count(), 1, f"{alias}: after an abandoned iterator")
        connections[alias].close()
    eq(Counter.objects.filter(key__startswith="iter-").count(), 2, "writes during the iterations")
    Counter.objects.filter(key__startswith="iter-").delete()
    Author.objects.filter(name__startswith="it").delete()


def t_json():
    a = Author.objects.create(name="json")
    docs = [
        {"kind": "novel", "n": 1, "meta": {"lang": "fr", "sizes": [1, 2]}, "flag": True},
        {"kind": "essay", "n": 2, "meta": {"lang": "en"}, "flag": False, "extra": None},
        {"kind": "novel", "n": 3, "meta": {"lang": "en", "sizes": [3]}, "ü": "☃"},
        [1, 2, 3],
        "plain string",
    ]
    for i, d in enumerate(docs):
        Book.objects.create(author=a, title=f"j{i}", price=1, data=d, keywords=["x", f"k{i}"])
    qs = Book.objects.filter(author=a)
    eq(list(qs.filter(data__kind="novel").order_by("title").values_list("title", flat=True)), ["j0", "j2"], "key")
    eq(list(qs.filter(data__meta__lang="en").order_by("title").values_list("title", flat=True)), ["j1", "j2"],
       "nested key")
    eq(qs.filter(data__n__gte=2).count(), 2, "numeric comparison on a key")
    eq(qs.filter(data__has_key="extra").count(), 1, "has_key")
    eq(qs.filter(data__extra__isnull=False).count(), 1, "JSON null is not SQL NULL")
    eq(qs.filter(data__contains={"meta": {"sizes": [3]}}).count(), 1, "contains")
    eq(qs.filter(data__meta__sizes__1=2).count(), 1, "array index")
    eq(qs.filter(data__contains=[2]).count(), 1, "array contains")
    eq(qs.filter(data__flag=True).count(), 1, "boolean")
    eq(qs.get(title="j4").data, "plain string", "scalar JSON")
    eq(qs.get(title="j2").data["ü"], "☃", "unicode")
    eq(list(qs.filter(data__kind="novel").order_by("title").values_list("data__meta__lang", flat=True)),
       ["fr", "en"], "key transform in values")
    eq(list(qs.order_by("title").values_list("keywords", flat=True))[:2], [["x", "k0"], ["x", "k1"]], "ArrayField")
    eq(qs.filter(keywords__contains=["k3"]).count(), 1, "ArrayField contains")
    eq(qs.filter(keywords__len=2).count(), 5, "ArrayField len")
    a.delete()


def t_types():
    ts = dt.datetime(2024, 2, 29, 23, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    a = Author.objects.create(name="types", rating=decimal.Decimal("-12345.678"))
    b = Book.objects.create(author=a, title="types", price=decimal.Decimal("99999999.99"), published=ts)
    b2 = Book.objects.get(pk=b.pk)
    eq(b2.published, ts, "timestamptz instant")
    eq(b2.published.utcoffset(), dt.timedelta(0), "returned in UTC")
    eq(b2.price, decimal.Decimal("99999999.99"), "decimal")
    eq(Author.objects.get(pk=a.pk).rating, decimal.Decimal("-12345.678"), "negative decimal")
    eq(Book.objects.filter(published__date=dt.date(2024, 3, 1)).count(), 1, "__date in TIME_ZONE (Paris)")
    eq(Book.objects.filter(published__year=2024, published__month=3).count(), 1, "__month in TIME_ZONE")
    u = Author.objects.get(pk=a.pk).uid
    assert isinstance(u, uuid.UUID) and Author.objects.filter(uid=u).count() == 1, u
    a.delete()


def t_persistent():
    from django.core import signals
    from django.db import close_old_connections  # noqa: F401
    conn = connections["persistent"]
    seen = set()
    for i in range(5):
        signals.request_started.send(sender=None)
        with conn.cursor() as cur:
            cur.execute("SELECT %s::int", [i])
            eq(cur.fetchone()[0], i, f"request {i}")
            if i == 0:
                cur.execute("SET application_name = 'dj_persistent'")
            cur.execute("SHOW application_name")
            eq(cur.fetchone()[0], "dj_persistent", f"session state kept, request {i}")
        seen.add(id(conn.connection))
        signals.request_finished.send(sender=None)
    eq(len(seen), 1, "one persistent DB-API connection")
    assert conn.connection is not None, "persistent connection closed at request end"
    # CONN_MAX_AGE = 0: closed at the end of each request
    d = connections["default"]
    signals.request_started.send(sender=None)
    Author.objects.count()
    signals.request_finished.send(sender=None)
    eq(d.connection, None, "CONN_MAX_AGE=0 closes")
    # an error leaves the persistent connection usable (rolled back, health check)
    signals.request_started.send(sender=None)
    try:
        with transaction.atomic(using="persistent"):
            with conn.cursor() as cur:
                cur.execute("SELECT 1/0")
    except Exception as e:  # noqa: BLE001
        eq(sqlstate(e), "22012", "division by zero")
    signals.request_finished.send(sender=None)
    signals.request_started.send(sender=None)
    with conn.cursor() as cur:
        cur.execute("SELECT 5")
        eq(cur.fetchone()[0], 5, "usable after the error")
    signals.request_finished.send(sender=None)
    eq(len(seen | {id(conn.connection)}), 1, "still the same connection")


def t_unmigrate():
    call_command("migrate", LABEL, "zero", verbosity=0)
    tables = set(connection.introspection.table_names())
    left = [t for t in tables if t.startswith(LABEL + "_")]
    eq(left, [], "tables dropped by migrate zero")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM django_migrations WHERE app = %s", [LABEL])
        eq(cur.fetchone()[0], 0, "django_migrations rows")


# ------------------------------------------------------------------ sharded table (sharded target)
# drv_contacts is sharded by user_id (hash, two shards: scripts/test-drivers). Key band 6e10..
# (psycopg 1e10, pgjdbc 2e10, node 3e10, sqlx 4e10, sqlalchemy 5e10); psycopg2 run: + 50.
SH_LO = 60_000_000_000 + (os.getpid() % 4_000_000) * 100
SH_N = 10
sh_model = {}
sh_shard = {}


def sh_qs():
    return Contact.objects.filter(user_id__gte=SH_LO, user_id__lt=SH_LO + 100)


def sh_all():
    return list(sh_qs().order_by("user_id", "id").values_list("user_id", "id", "name", "n"))


def sh_expect():
    return sorted((u, i, nm, n) for (u, i), (nm, n) in sh_model.items())


def sh_refused(fn, what):
    from django.db import NotSupportedError
    e = expect(fn, NotSupportedError, "0A000", what)
    assert len(str(e)) > 20, f"{what}: no explanation"


def t_sh_setup():
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS drv_contacts (id bigint, user_id bigint NOT NULL, name text,"
                    " n int, PRIMARY KEY (user_id, id))")
    sh_qs().delete()
    for k in range(SH_N):
        u = SH_LO + k
        for i in (1, 2, 3):
            Contact.objects.create(user_id=u, id=i, name=f"c{u}_{i}", n=k * 10 + i)
            sh_model[(u, i)] = (f"c{u}_{i}", k * 10 + i)
    with connection.cursor() as cur:
        for shard in ("s0", "s1"):
            cur.execute(f"/* pgproxy: shard={shard} */ SELECT user_id FROM drv_contacts"
                        f" WHERE user_id BETWEEN {SH_LO} AND {SH_LO + 99} AND id = 1")
            for (u,) in cur.fetchall():
                assert u not in sh_shard, f"user {u} on both shards"
                sh_shard[u] = shard
    eq(sorted(sh_shard), list(range(SH_LO, SH_LO + SH_N)), "users placed")
    eq(len(set(sh_shard.values())), 2, "both shards used")
    eq(sh_all(), sh_expect(), "merged read")


def t_sh_by_key():
    u = SH_LO + 3
    c = Contact.objects.get(pk=(u, 2))
    eq((c.name, c.n), sh_model[(u, 2)], "get by composite pk")
    c.n = 777
    c.save()  # UPDATE ... WHERE user_id = .. AND id = ..
    sh_model[(u, 2)] = (c.name, 777)
    eq(Contact.objects.filter(user_id=u).update(name=Concat(F("name"), Value("!"))), 3, "update() by key")
    for i in (1, 2, 3):
        sh_model[(u, i)] = (sh_model[(u, i)][0] + "!", sh_model[(u, i)][1])
    eq(Contact.objects.filter(user_id=u, id=3).delete()[0], 1, "delete() by key")
    del sh_model[(u, 3)]
    obj, created = Contact.objects.get_or_create(user_id=u, id=9, defaults={"name": "goc", "n": 9})
    eq(created, True, "get_or_create by key")
    sh_model[(u, 9)] = ("goc", 9)
    with transaction.atomic():
        Contact.objects.create(user_id=u, id=10, name="tx", n=10)
        try:
            with transaction.atomic():
                Contact.objects.create(user_id=u, id=1, name="dup", n=0)
        except IntegrityError as e:
            eq(sqlstate(e), "23505", "dup in a savepoint")
        eq(Contact.objects.filter(user_id=u).count(), 4, "count by key in the transaction")
    sh_model[(u, 10)] = ("tx", 10)
    eq(sh_all(), sh_expect(), "after the writes by key")


def t_sh_two_shards():
    a = SH_LO
    b = next(u for u in sh_shard if sh_shard[u] != sh_shard[a])
    with transaction.atomic():
        Contact.objects.filter(user_id=a, id=1).update(name="two-a")
        Contact.objects.filter(user_id=b, id=1).update(name="two-b")
    sh_model[(a, 1)] = ("two-a", sh_model[(a, 1)][1])
    sh_model[(b, 1)] = ("two-b", sh_model[(b, 1)][1])
    try:
        with transaction.atomic():
            Contact.objects.create(user_id=a, id=50, name="rb", n=0)
            Contact.objects.create(user_id=b, id=50, name="rb", n=0)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    eq(sh_all(), sh_expect(), "2PC commit and rollback")


def t_sh_bulk_create():
    """bulk_create with rows of several users: one INSERT (Django 5.2: INSERT ... SELECT * FROM
    UNNEST(...) for plain columns). Lands every row on its shard, or is refused with 0A000."""
    us = [SH_LO + k for k in range(SH_N)]
    try:
        Contact.objects.bulk_create([Contact(user_id=u, id=30, name="bulk", n=30) for u in us])
    except Exception as e:  # noqa: BLE001
        if sqlstate(e) != "0A000":
            raise
        print(f"NOTE django-{BACKEND} {TARGET}: bulk_create over several shards refused: {e}".strip(), flush=True)
    else:
        for u in us:
            sh_model[(u, 30)] = ("bulk", 30)
    # one user's rows: one shard (pgproxy reads the keys from the UNNEST arrays)
    u = SH_LO + 1
    Contact.objects.bulk_create([Contact(user_id=u, id=40 + i, name="one", n=i) for i in range(3)])
    for i in range(3):
        sh_model[(u, 40 + i)] = ("one", i)
    eq(sh_all(), sh_expect(), "bulk_create rows")
    with connection.cursor() as cur:
        for shard in ("s0", "s1"):
            cur.execute(f"/* pgproxy: shard={shard} */ SELECT user_id FROM drv_contacts"
                        f" WHERE user_id BETWEEN {SH_LO} AND {SH_LO + 99}")
            bad = [x for (x,) in cur.fetchall() if sh_shard[x] != shard]
            eq(bad, [], f"rows of other shards' keys on {shard}")


def t_sh_merged():
    rows = sh_expect()
    eq(sh_qs().count(), len(rows), "count()")
    eq(sh_qs().aggregate(s=Sum("n"), m=Max("n")), {"s": sum(r[3] for r in rows), "m": max(r[3] for r in rows)},
       "aggregate")
    top = sorted(rows, key=lambda r: (-r[3], r[0], r[1]))
    eq(list(sh_qs().order_by("-n", "user_id", "id").values_list("user_id", "id")[2:7]),
       [(r[0], r[1]) for r in top[2:7]], "ORDER BY LIMIT OFFSET")
    eq(sh_qs().filter(n__gt=1000).exists(), False, "exists()")
    groups = {}
    for u, _, _, n in rows:
        groups.setdefault(u, []).append(n)
    eq(list(sh_qs().values("user_id").annotate(c=Count("id"), s=Sum("n")).order_by("user_id")
            .values_list("user_id", "c", "s")), [(u, len(v), sum(v)) for u, v in sorted(groups.items())],
       "GROUP BY key")
    eq(list(sh_qs().values_list("id", flat=True).distinct().order_by("id")), sorted({r[1] for r in rows}), "distinct")
    # iterator: a server-side cursor over every shard (DECLARE ... WITH HOLD outside atomic)
    try:
        got = [(c.user_id, c.id) for c in sh_qs().order_by("user_id", "id").iterator(chunk_size=7)]
        eq(got, [(r[0], r[1]) for r in rows], "iterator() across shards")
    except Exception as e:  # noqa: BLE001
        if "0A000" not in sqlstates(e):
            raise
        print(f"NOTE django-{BACKEND} {TARGET}: iterator() across shards refused ({sqlstates(e)}):"
              f" {e.__context__ or e}".strip(), flush=True)
    connection.close()
    # iterator() by key, for a key of each shard, then a statement for the other shard: Django's
    # DECLARE ... WITH HOLD / FETCH FORWARD 2 / CLOSE
    a = SH_LO
    b = next(u for u in sh_shard if sh_shard[u] != sh_shard[a])
    for u, other in ((a, b), (b, a)):
        eq([(c.user_id, c.id) for c in sh_qs().filter(user_id=u).order_by("id").iterator(chunk_size=2)],
           [(r[0], r[1]) for r in rows if r[0] == u], f"iterator() by key {u} ({sh_shard[u]})")
        eq(sh_qs().filter(user_id=other).count(), sum(1 for r in rows if r[0] == other),
           f"key {other} ({sh_shard[other]}) after the iterator over {sh_shard[u]}")
        connection.close()
    # keyless read inside atomic: merged, and after a write it sees the write, as on one
    # PostgreSQL; rolled back, it is gone
    total = sum(r[3] for r in rows)
    with transaction.atomic():
        Contact.objects.filter(user_id=SH_LO, id=2).count()
        eq(sh_qs().count(), len(rows), "keyless read in a transaction")
        Contact.objects.filter(user_id=SH_LO, id=2).update(n=F("n") + 1000)
        eq(sh_qs().aggregate(s=Sum("n"))["s"], total + 1000,
           "keyless read after a write in a transaction sees it")
        transaction.set_rollback(True)
    eq(sh_qs().aggregate(s=Sum("n"))["s"], total, "rolled back")


def t_sh_keyless_writes():
    n = sh_qs().filter(id=2).update(n=F("n") + 1000)
    exp = [k for k in sh_model if k[1] == 2]
    eq(n, len(exp), "keyless update() count")
    for k in exp:
        sh_model[k] = (sh_model[k][0], sh_model[k][1] + 1000)
    n, _ = sh_qs().filter(name="goc").delete()
    exp = [k for k, v in sh_model.items() if v[0] == "goc"]
    eq(n, len(exp), "keyless delete() count")
    for k in exp:
        del sh_model[k]
    eq(sh_all(), sh_expect(), "after keyless writes")


def t_sh_cleanup():
    sh_qs().delete()
    eq(sh_qs().count(), 0, "none left")


# ------------------------------------------------------------------ main

def main():
    print(f"django {django.get_version()}, {BACKEND} {connection.Database.__version__}, target {TARGET} {HOST}:{PORT}",
          flush=True)
    C.run("connect, session setup (time zone), parameters", checked(t_connect))
    C.run("makemigrations + migrate (create tables, constraints), schema editor", checked(t_migrate))
    if Author._meta.db_table in connection.introspection.table_names():
        close_all()
        C.run("CRUD, filters, slicing, update()/delete() counts, F", checked(t_crud))
        C.run("bulk_create of plain columns (Django 5.2: INSERT ... SELECT * FROM UNNEST ... RETURNING)",
              checked(known_limit(t_bulk_unnest)))
        C.run("bulk_create (VALUES form) returning ids, bulk_update, ON CONFLICT, cascade counts", checked(t_bulk))
        C.run("select_related / prefetch_related, m2m", checked(t_related))
        C.run("ManyToMany set()/add() of several objects", checked(known_limit(t_m2m_set)))
        C.run("transaction.atomic, nested savepoints, IntegrityError, select_for_update", checked(t_atomic))
        C.run("aggregates, annotate, distinct, F expressions", checked(t_aggregates))
        C.run("get_or_create / update_or_create", checked(t_get_or_create))
        C.run("iterator(): server-side cursors (WITH HOLD) and DISABLE_SERVER_SIDE_CURSORS", checked(t_iterator))
        C.run("JSONField and ArrayField queries", checked(t_json))
        C.run("DecimalField, DateTimeField (tz), UUIDField round trips", checked(t_types))
        C.run("CONN_MAX_AGE persistent connection, health checks", checked(t_persistent))
    C.run("migrate zero (drop tables)", checked(t_unmigrate))
    if TARGET == "sharded":
        global SH_LO
        if BACKEND == "psycopg2":
            SH_LO += 50
        C.run("sharded: create() per user, placement, merged read", checked(t_sh_setup))
        if len(sh_shard) == SH_N:
            C.run("sharded: by key (get, save, update, delete, get_or_create, atomic)", checked(t_sh_by_key))
            C.run("sharded: atomic over two shards (2PC)", checked(t_sh_two_shards))
            C.run("sharded: bulk_create over several users", checked(t_sh_bulk_create))
            C.run("sharded: keyless reads merged (count, aggregate, slicing, iterator) or refused",
                  checked(t_sh_merged))
            C.run("sharded: keyless update()/delete()", checked(t_sh_keyless_writes))
        C.run("sharded: cleanup", checked(t_sh_cleanup))


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
if BACKEND == "psycopg" and "--no-psycopg2" not in sys.argv:
    # the same checks with psycopg2, in a child process (its own app label and tables)
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--psycopg2"], timeout=240)
    if child.returncode != 0:
        C.failed += 1 if not C.failed else 0
        print(f"django-psycopg2 {TARGET}: the psycopg2 run failed (exit {child.returncode})", flush=True)
C.finish()
