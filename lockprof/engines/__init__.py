"""Engines: how a worker talks to ClickHouse.

Every ``--engine`` kind is parsed and opened through :mod:`lockprof.engines.registry`;
:mod:`lockprof.engines.base` is the contract each engine keeps. This package module
imports nothing, so the launched server's process (:mod:`lockprof.engines.listener`)
loads none of the rest.
"""
