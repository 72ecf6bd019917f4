"""Other names for a configuration's fields.

The three model configurations (:class:`~qkvcourse.TransformerConfig`,
:class:`~qkvcourse.GPTConfig`, :class:`~qkvcourse.BERTConfig`) name the same quantity the
same way: ``d_model`` (the width), ``num_heads``, ``ffn_num_hiddens`` (the FFN's hidden
width), ``num_layers`` (``num_enc_layers`` and ``num_dec_layers`` for the encoder–decoder),
``dropout``, ``bias``, ``max_len``. d2l's names (``num_hiddens``, ``num_blks``,
``num_enc_blks``, ``use_bias``...) are accepted as keyword arguments and readable (and
writable) as attributes, so code written against d2l keeps working.
"""
from __future__ import annotations

import functools


def field_aliases(**aliases: str):
    """Class decorator for a dataclass: ``alias="field"`` makes ``alias=`` a keyword of the
    constructor and ``obj.alias`` a property reading and writing ``obj.field``."""

    def decorate(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            for alias, name in aliases.items():
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{cls.__name__} got both {name}= and {alias}=, which "
                                        f"is another name for it (dataclasses.replace needs "
                                        f"the field's own name, {name}=)")
                    kwargs[name] = kwargs.pop(alias)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for alias, name in aliases.items():
            setattr(cls, alias, property(
                lambda self, name=name: getattr(self, name),
                lambda self, value, name=name: setattr(self, name, value),
                doc=f"Another name for ``{name}`` (d2l's)."))
        cls.field_aliases = dict(aliases)
        return cls

    return decorate
