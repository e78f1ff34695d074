"""Search of the embedded target (MS-ASCMD 2.2.1.16): the Global Address List and the mailbox.

* GAL (example 4.13.1): ``Search{Store{Name "GAL", Query, Options{Range}}}``.  The directory is the
  target's users (store.Store.users), each with a display name, first and last name, alias,
  address, phone, mobile phone, office, title and company derived from (seed, user) -- nothing
  stored per user but the index below.  Matching is a prefix match as Exchange's ambiguous name
  resolution does it, case-insensitive, on the display name (so on the first name and on "first
  last"), the last name and the SMTP address (so on the alias).  The index is built once per store:
  the sorted keys and the user each belongs to; a query is two bisections, then a walk over the
  matching keys only as far as the Range needs (:class:`Directory`), so 100,000 users cost no scan
  per request.  ``Total`` is exact when at most :data:`EXACT_TOTAL` keys match, otherwise the
  number of matching keys (a user matching by two keys counts twice): Total is the server's
  estimate of the matches (MS-ASCMD 2.2.3.184.3).
* Mailbox (example 4.12.1.1): ``Search{Store{Name "Mailbox", Query{And{airsync:Class "Email",
  [airsync:CollectionId], FreeText}}, Options{[RebuildResults], Range, [DeepTraversal],
  [airsyncbase:BodyPreference]}}}``.  Every word of FreeText must occur (case-insensitive) in an
  item's subject, sender or the first :data:`BODY_SCAN` characters of its text; the items of the named folder (with DeepTraversal its subfolders
  too) or of every mail folder, newest first, at most :data:`SCAN_LIMIT` items per request.  Each
  Result is ``{airsync:Class, LongId, airsync:CollectionId, Properties{the Email ApplicationData
  of a Sync (sync.render_email), airsyncbase:Body by the BodyPreference}}``; the LongId is the
  item's ServerId (SmartReply/SmartForward and MeetingResponse accept it as LongId).
* Answer (MS-ASCMD 6.35): ``Search{Status, Response{Store{Status, Result*, Range, Total}}}``; no
  match is one empty Result and no Range (MS-ASCMD 2.2.3.155.3).  Range ``m-n`` is zero-based; at
  most :data:`MAX_RESULTS` entries are returned (the rest of the range is cut).

Statuses (MS-ASCMD 2.2.3.177.13): the Search element's Status is 1 (the Store's says the rest); the
Store's Status is 2 "request invalid" (no Query or FreeText, a malformed Range, a Store this target
does not serve -- DocumentLibrary), 11 "FolderSync required" (an unknown CollectionId), 12 "end of
retrievable range exceeded" (a Range starting at or beyond :data:`MAX_RESULTS`).  A body that is not
a Search request is the common status 103 InvalidXML (MS-ASCMD 2.2.2).
"""

import weakref
import zlib
from array import array
from bisect import bisect_left

from _wbxml import children, encode, find, findtext
from loadgen.exchange import store as st
from loadgen.exchange.sync import render_email

MAX_RESULTS = 100  # entries one Search returns at most (the Range is cut to it)
EXACT_TOTAL = 1000  # matching keys up to which Total is counted exactly (distinct users)
SCAN_LIMIT = 5000  # mail items one mailbox Search reads at most
BODY_SCAN = 1024  # characters of an item's text FreeText is matched against (a bounded cost per item)
_END = "\U0010ffff"

# the directory's word pools (a real GAL has people of the same name: ResolveRecipients finds them ambiguous)
FIRST_NAMES = (
    "Aaron", "Alice", "Amir", "Ana", "Anders", "Aiko", "Ben", "Bianca", "Carlos", "Chen", "Claire", "Daniel",
    "Diana", "Elena", "Emma", "Farid", "Fatima", "Grace", "Hannah", "Hiro", "Ines", "Ivan", "Jakob", "Julia",
    "Kai", "Karin", "Lars", "Lea", "Lucas", "Maria", "Mei", "Nadia", "Noah", "Olga", "Omar", "Paula", "Pedro",
    "Priya", "Rafael", "Sara", "Sofia", "Tom", "Yara", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Abe", "Andersen", "Bauer", "Becker", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Gomez", "Hansen",
    "Ito", "Jensen", "Kim", "Kowalski", "Lambert", "Lopez", "Martin", "Meyer", "Moreau", "Muller", "Nakamura",
    "Nguyen", "Novak", "Olsen", "Patel", "Petrov", "Rossi", "Sato", "Schmidt", "Silva", "Smith", "Suzuki",
    "Tanaka", "Wagner", "Weber", "Williams", "Wong", "Yamamoto", "Zhang",
)
TITLES = ("Engineer", "Sales Manager", "Accountant", "Consultant", "Designer", "Support Specialist",
          "Project Manager", "Analyst", "Director", "Assistant")
_GAL_FIELDS = ("GAL:DisplayName", "GAL:Phone", "GAL:Office", "GAL:Title", "GAL:Company", "GAL:Alias",
               "GAL:FirstName", "GAL:LastName", "GAL:MobilePhone", "GAL:EmailAddress")


class Person:
    """One directory entry, derived from (seed, user) whenever it is needed."""

    __slots__ = ("user", "first", "last", "display", "alias", "address", "phone", "mobile", "office", "title",
                 "company")

    def __init__(self, directory, user):
        store = directory.store
        h = zlib.crc32(("%s|gal|%s" % (store.seed, user)).encode())
        self.user = user
        self.first = FIRST_NAMES[h % len(FIRST_NAMES)]
        self.last = LAST_NAMES[(h >> 6) % len(LAST_NAMES)]
        self.display = "%s %s" % (self.first, self.last)
        self.address = store.address(user)
        self.alias = self.address.partition("@")[0]
        self.phone = "+1 425 555 %04d" % ((h >> 12) % 10000)
        self.mobile = "+1 206 555 %04d" % ((h >> 3) % 10000)
        self.office = "Building %d/%d" % (1 + (h >> 20) % 9, 100 + (h >> 8) % 400)
        self.title = TITLES[(h >> 24) % len(TITLES)]
        self.company = directory.company

    def properties(self):
        """The GAL Properties children (MS-ASCMD 2.2.3.139.3), in the GAL code page's order."""
        return [("GAL:DisplayName", self.display), ("GAL:Phone", self.phone), ("GAL:Office", self.office),
                ("GAL:Title", self.title), ("GAL:Company", self.company), ("GAL:Alias", self.alias),
                ("GAL:FirstName", self.first), ("GAL:LastName", self.last), ("GAL:MobilePhone", self.mobile),
                ("GAL:EmailAddress", self.address)]


class Directory:
    """The GAL of one store: sorted lowercase keys (display name, last name, address) and, at the same
    positions, the number of the user each key belongs to.  Built once (:func:`directory`)."""

    def __init__(self, store):
        self.store = store
        self.users = store.user_list
        self.company = store.domain.partition(".")[0].capitalize() + " Ltd."
        pairs = []
        seed = store.seed
        address = store.address
        nf, nl = len(FIRST_NAMES), len(LAST_NAMES)
        displays = [["%s %s" % (f.lower(), la.lower()) for la in LAST_NAMES] for f in FIRST_NAMES]
        lasts = [la.lower() for la in LAST_NAMES]
        crc = zlib.crc32
        for i, user in enumerate(self.users):
            h = crc(("%s|gal|%s" % (seed, user)).encode())  # as Person derives the names
            last = (h >> 6) % nl
            pairs.append((displays[h % nf][last], i))
            pairs.append((lasts[last], i))
            pairs.append((address(user).lower(), i))
        pairs.sort()
        self.keys = [k for k, _ in pairs]
        self.owner = array("i", [i for _, i in pairs])

    def person(self, i):
        return Person(self, self.users[i])

    def span(self, query):
        """(lo, hi): the positions of the keys that start with ``query`` (already lowercase)."""
        keys = self.keys
        return bisect_left(keys, query), bisect_left(keys, query + _END)

    def matches(self, query, first, count):
        """(user numbers from the ``first``-th distinct match on, at most ``count``, and the total);
        the total is exact up to EXACT_TOTAL matching keys, the matching keys' count beyond."""
        lo, hi = self.span(query)
        owner = self.owner
        seen = set()
        out = []
        exact = hi - lo <= EXACT_TOTAL
        for pos in range(lo, hi):
            i = owner[pos]
            if i in seen:
                continue
            seen.add(i)
            if len(seen) > first and len(out) < count:
                out.append(i)
            elif not exact and len(out) >= count:
                break
        return out, (len(seen) if exact else hi - lo)


_DIRECTORIES = weakref.WeakKeyDictionary()  # store -> Directory


def directory(store):
    """The GAL of ``store``, built on first use and kept with the store."""
    d = _DIRECTORIES.get(store)
    if d is None or d.users is not store.user_list:
        d = _DIRECTORIES[store] = Directory(store)
    return d


def parse_range(text):
    """(first, last) of a Range ``m-n`` (MS-ASCMD 2.2.3.143.3), None when malformed; default 0-99."""
    if text is None:
        return 0, MAX_RESULTS - 1
    if type(text) is not str:
        return None
    low, sep, high = text.strip().partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        return None
    low, high = int(low), int(high)
    if low > high:
        return None
    return low, high


def _store_answer(status, results=(), first=0, total=None):
    out = [("Search:Status", str(status))]
    if results:
        out += results
        out.append(("Search:Range", "%d-%d" % (first, first + len(results) - 1)))
    elif status == 1:
        out.append(("Search:Result", None))  # no match: an empty Result
    if total is not None:
        out.append(("Search:Total", str(total)))
    return encode(("Search:Search", [("Search:Status", "1"), ("Search:Response", [("Search:Store", out)])]))


def _window(options):
    """(first, count) of the Range in ``options``, or a Store status."""
    rng = parse_range(findtext(options, "Search:Range") if options is not None else None)
    if rng is None:
        return 2
    first, last = rng
    if first >= MAX_RESULTS:
        return 12
    return first, min(last, MAX_RESULTS - 1) - first + 1


def search_gal(store, query, options):
    """The Search answer of a GAL query."""
    if type(query) is not str or not query.strip():
        return _store_answer(2), 2
    window = _window(options)
    if type(window) is int:
        return _store_answer(window), window
    first, count = window
    d = directory(store)
    found, total = d.matches(query.strip().casefold(), first, count)
    results = [("Search:Result", [("Search:Properties", d.person(i).properties())]) for i in found]
    return _store_answer(1, results, first, total), 1


def _mail_folders(box, collection_id, deep):
    """The mail folder ids to search, or None for an unknown folder."""
    folders = [sid for sid, _p, _n, t in st.FOLDERS if st.folder_class(t) == "Email"]
    if collection_id is None:
        return folders
    if collection_id not in folders:
        return None
    out = [collection_id]
    if deep:
        out += [sid for sid, parent, _n, _t in st.FOLDERS if parent == collection_id and sid in folders]
    return out


def _body_preference(options):
    if options is None:
        return "1", None
    for pref in children(options):
        if pref[0] == "AirSyncBase:BodyPreference" and type(pref[1]) is list:
            body_type = findtext(pref, "AirSyncBase:Type")
            truncation = findtext(pref, "AirSyncBase:TruncationSize")
            try:
                truncation = int(truncation) if truncation is not None else None
            except ValueError:
                truncation = None
            if body_type in ("1", "2", "4"):
                return body_type, truncation
    return "1", None


def _matches(item, words):
    """True when every word occurs in the item's subject, sender or the first BODY_SCAN characters of
    its text (case-insensitive); the text is built only when the subject and sender do not suffice."""
    head = ("%s\n%s" % (item.subject, item.sender)).lower()
    body = None
    for word in words:
        if word in head:
            continue
        if body is None:
            if isinstance(item, st.GenMail):  # only the head of a generated text (store.body_text)
                body = st.body_text(item.language, min(item.size, BODY_SCAN), item.d >> 5).lower()
            else:
                body = (item.text or "")[:BODY_SCAN].lower()
        if word not in body:
            return False
    return True


def search_mailbox(box, query, options):
    """The Search answer of a mailbox query (FreeText over subjects, senders and texts)."""
    conditions = find(query, "Search:And") if query is not None else None
    if conditions is None or type(conditions[1]) is not list:
        conditions = query
    free = findtext(conditions, "Search:FreeText") if conditions is not None else None
    if type(free) is not str or not free.split():
        return _store_answer(2), 2
    collection_id = findtext(conditions, "AirSync:CollectionId")
    if collection_id is not None and type(collection_id) is not str:
        return _store_answer(2), 2
    window = _window(options)
    if type(window) is int:
        return _store_answer(window), window
    first, count = window
    deep = options is not None and find(options, "Search:DeepTraversal") is not None
    folders = _mail_folders(box, collection_id, deep)
    if folders is None:
        return _store_answer(11), 11
    words = free.lower().split()
    body_type, truncation = _body_preference(options)
    hits = []
    scanned = 0
    for fid in folders:
        f = box.folder(fid)
        for n in reversed(list(f.numbers())):  # newest first
            if scanned >= SCAN_LIMIT:
                break
            scanned += 1
            item = box.item(fid, n)
            if item is not None and item.cls == "Email" and _matches(item, words):
                hits.append((item.date, fid, n, item))
    hits.sort(key=lambda h: h[0], reverse=True)
    results = []
    for _date, fid, n, item in hits[first:first + count]:
        sid = "%s:%d" % (fid, n)
        results.append(("Search:Result", [
            ("AirSync:Class", "Email"), ("Search:LongId", sid), ("AirSync:CollectionId", fid),
            ("Search:Properties", render_email(box, fid, n, item, body_type, truncation))]))
    return _store_answer(1, results, first, len(hits)), 1


def respond(state, record, tree):
    """(WBXML body, Store status) of a Search request tree, or None when it is not one."""
    if tree is None or tree[0] != "Search:Search" or type(tree[1]) is not list:
        return None
    node = find(tree, "Search:Store")
    if node is None or type(node[1]) is not list:
        return None
    name = findtext(node, "Search:Name")
    query = find(node, "Search:Query")
    options = find(node, "Search:Options")
    if options is not None and type(options[1]) is not list:
        options = None
    store = state.store
    if name == "GAL":
        return search_gal(store, query[1] if query is not None else None, options)
    if name == "Mailbox":
        if query is None or type(query[1]) is not list:
            return _store_answer(2), 2
        return search_mailbox(store.mailbox(record.user), query, options)
    return _store_answer(2), 2  # DocumentLibrary and unknown stores are not served


def handle(target, record, version, tree):
    """The Target's handler (handlers.py)."""
    answer = respond(target.state, record, tree)
    if answer is None:
        return target._error("Search", version, 400, 103)
    body, status = answer
    if status == 1:
        target.state.store.counters["searches"] += 1
    return target._wbxml("Search", body, status)
