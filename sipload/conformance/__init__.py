"""Conformance testing: RFC cases run against a SIP UAS, proxy, registrar or UAC.

See :mod:`sipload.conformance.runner` (selection and running),
:mod:`sipload.conformance.probe` (the harness), :mod:`sipload.conformance.model`
(cases and verdicts) and :mod:`sipload.conformance.profile` (what a target claims).
"""
