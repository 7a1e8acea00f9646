"""kopf glue: parse, gather, plan, apply.

Decisions live in planning/, effects in k8s/ and ledger/.
"""
