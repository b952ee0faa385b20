/** Where the agent listens unless told otherwise (docs/agent.md); a module of its own so the CLI loads nothing else of the agent to know it. */
export const DEFAULT_SOCKET = '/run/portwall/portwall.sock';
