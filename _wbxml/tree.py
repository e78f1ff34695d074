"""Helpers to build and walk element trees ``(tag, content)``.

Shared by both codec twins, so trees and slots are the same objects whichever
codec is active.
"""


class Slot:
    """A placeholder for a text value in a :class:`_wbxml.Template`."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Slot(%r)" % (self.name,)


def children(element):
    """The child elements of ``element`` (empty when it holds text or nothing)."""
    content = element[1]
    return content if type(content) is list else ()


def find(element, path):
    """First descendant along ``path`` ("A:x/B:y"), or None."""
    node = element
    for step in path.split("/"):
        for child in children(node):
            if child[0] == step:
                node = child
                break
        else:
            return None
    return node


def findall(element, path):
    """All elements matching the last step of ``path`` under the first match of the rest."""
    head, _, last = path.rpartition("/")
    parent = find(element, head) if head else element
    if parent is None:
        return []
    return [c for c in children(parent) if c[0] == last]


def findtext(element, path, default=None):
    """Text of the first element along ``path``; ``default`` when absent or not text."""
    node = find(element, path)
    if node is None:
        return default
    content = node[1]
    if type(content) is str:
        return content
    if content is None or content == []:
        return ""
    return default


def iter_elements(element):
    """All elements of the tree, depth first, the root first."""
    stack = [element]
    while stack:
        node = stack.pop()
        yield node
        content = node[1]
        if type(content) is list:
            stack.extend(reversed(content))
