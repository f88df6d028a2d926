"""The provider agent: a standalone program that runs next to a provider's GPUs.

It talks to the marketplace only over HTTP, like any third-party provider would, and never
imports Django or the marketplace's apps (an import-linter contract checks it).
"""
