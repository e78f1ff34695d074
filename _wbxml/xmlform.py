"""The XML text form of EAS WBXML trees, for humans (``easload wbxml decode``).

The root's code page is the default namespace; every other page used is
declared on the root with its lower-case page name as prefix, as in the seed
documents (``<Provision xmlns="Provision:" xmlns:settings="Settings:">``).
Opaque data is written as base64 with ``opaque="base64"`` so that it comes back
as bytes.  ``from_xml`` accepts the spec namespaces and the legacy aliases
(``POOMMAIL:``, ``POOMCONTACTS:``...).

Round trip: ``from_xml(to_xml(t)) == t`` for every tree whose empty elements
are written without content (``None``), which is how EAS peers encode them.
"""

import base64
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from _wbxml import encode
from _wbxml.codepages import PAGES
from _wbxml.errors import TreeError

_NS_OF_PAGE = {name: ns for _n, name, ns, _a, _s, _t in PAGES}
_PAGE_OF_NS = {}
for _n, _name, _ns, _aliases, _s, _t in PAGES:
    for _alias in (_ns, _name + ":", *_aliases):
        _PAGE_OF_NS.setdefault(_alias, _name)
        _PAGE_OF_NS.setdefault(_alias.lower(), _name)


def _pages_used(tree, found):
    stack = [tree]
    while stack:
        tag, content = stack.pop()
        found.setdefault(tag.partition(":")[0], None)
        if type(content) is list:
            stack.extend(content)
    return found


def to_xml(tree, indent="  "):
    """Render a tree as indented XML text."""
    root_page = tree[0].partition(":")[0]
    pages = [p for p in _pages_used(tree, {}) if p != root_page]
    decl = ' xmlns="%s"' % _NS_OF_PAGE[root_page]
    decl += "".join(' xmlns:%s="%s"' % (p.lower(), _NS_OF_PAGE[p]) for p in pages)
    lines = ['<?xml version="1.0" encoding="utf-8"?>']

    def name(tag):
        page, _, local = tag.partition(":")
        return local if page == root_page else "%s:%s" % (page.lower(), local)

    def walk(element, level, extra):
        tag, content = element
        pad = indent * level
        n = name(tag)
        if content is None or content == [] or content == "":
            lines.append("%s<%s%s/>" % (pad, n, extra))
        elif type(content) is str:
            lines.append("%s<%s%s>%s</%s>" % (pad, n, extra, escape(content), n))
        elif type(content) is bytes:
            b64 = base64.b64encode(content).decode("ascii")
            lines.append("%s<%s%s opaque=%s>%s</%s>" % (pad, n, extra, quoteattr("base64"), b64, n))
        else:
            lines.append("%s<%s%s>" % (pad, n, extra))
            for child in content:
                walk(child, level + 1, "")
            lines.append("%s</%s>" % (pad, n))

    walk(tree, 0, decl)
    return "\n".join(lines) + "\n"


def _convert(elem):
    raw = elem.tag
    if raw[0] != "{":
        raise TreeError("element <%s> has no EAS namespace" % raw)
    ns, _, local = raw[1:].partition("}")
    page = _PAGE_OF_NS.get(ns) or _PAGE_OF_NS.get(ns.lower())
    if page is None:
        raise TreeError("unknown namespace %r on <%s>" % (ns, local))
    tag = "%s:%s" % (page, local)
    kids = list(elem)
    if kids:
        if (elem.text or "").strip():
            raise TreeError("<%s> mixes text and elements" % tag)
        for k in kids:
            if (k.tail or "").strip():
                raise TreeError("<%s> mixes text and elements" % tag)
        return (tag, [_convert(k) for k in kids])
    text = elem.text
    if elem.get("opaque") == "base64":
        try:
            return (tag, base64.b64decode("".join((text or "").split()), validate=True))
        except ValueError:  # binascii.Error: not base64 (RFC 4648 4)
            raise TreeError("<%s opaque=\"base64\"> is not valid base64" % tag) from None
    if text is None or text == "":
        return (tag, None)
    return (tag, text)


def from_xml(text):
    """Parse XML text (str or bytes) into a tree; TreeError on bad input."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TreeError("not well-formed XML: %s" % exc) from None
    _check_depth(root)
    tree = _convert(root)
    encode(tree)  # validates every tag against the code pages
    return tree


def _check_depth(root):
    """Refuse elements nested deeper than the codec's MAX_DEPTH (_wbxml/_pure.py), walking without
    recursion, before _convert recurses."""
    from _wbxml._pure import MAX_DEPTH

    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TreeError("elements nested deeper than %d" % MAX_DEPTH)
        stack.extend((child, depth + 1) for child in elem)
