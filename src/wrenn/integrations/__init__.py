"""Adapters that give Wrenn capsules a seat in agent and evaluation frameworks.

- ``wrenn.integrations.inspect``: an Inspect (``inspect-ai``) sandbox provider, used as
  ``sandbox="wrenn"`` in a task (``pip install 'wrenn[inspect]'``).
- ``wrenn.integrations.openai_agents``: a sandbox client for the OpenAI Agents SDK
  (``agents.sandbox``), ``WrennSandboxClient`` (``pip install 'wrenn[openai-agents]'``).

Each adapter imports its framework, so import the adapter's module only where the
framework is installed.
"""
