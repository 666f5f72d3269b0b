# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# Puts back builtins a board test replaced (builtins.abs = ..., builtins.__import__ = ...):
# _mpbt_bv() reads every builtin by its name (a name lookup sees the replacements, which
# getattr(builtins, name) does not), _mpbt_b0 is what they were, _mpbt_bc() restores them.
# Sent after _mpbt.py to boards with the RAM for it (the lookup function needs ~2 KB).
import builtins
_mpbt_bn=[n for n in dir(builtins) if n not in ('__class__','__dict__','__name__')]
exec('_mpbt_bv=lambda:('+','.join(_mpbt_bn)+',)')
_mpbt_b0=_mpbt_bv()
def _mpbt_bc():
 c=_mpbt_bv()
 for i in range(len(c)):
  if c[i] is not _mpbt_b0[i]:
   try:
    delattr(builtins,_mpbt_bn[i])
   except Exception:
    setattr(builtins,_mpbt_bn[i],_mpbt_b0[i])
