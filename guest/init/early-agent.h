/* kata-init's early agent (early-agent.c): serves Check and Exec on the agent's port until node's agent is ready. */
#ifndef KATA_EARLY_AGENT_H
#define KATA_EARLY_AGENT_H

/*
 * Serves `port` until node's agent says it is ready on `ready_fd` (a byte or EOF) or a request comes
 * that is not this agent's; then writes what it read and did not answer to `handover_fd` and exits.
 * `env` is the environment Exec's commands get (with their own env added). `sharefs` is the
 * kata.sharefs= value kata-init mounted ("" when none), which Check reports. Never returns.
 */
void early_agent(int port, int ready_fd, int handover_fd, char *const env[], const char *sharefs) __attribute__((noreturn));

#endif
