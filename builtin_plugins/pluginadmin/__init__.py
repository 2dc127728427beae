"""Plugins at run time: enable, disable, configure and rescan plugins while serving."""
