#ifndef C2D_CRABBITMQ_SHIM_H
#define C2D_CRABBITMQ_SHIM_H

// rabbitmq-c 0.12+ installs headers under rabbitmq-c/; Debian bookworm's 0.11 installs them flat.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#endif

// amqp_login is variadic, which Swift cannot call; this wrapper fixes the SASL PLAIN arguments.
static inline amqp_rpc_reply_t c2d_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                     int channel_max, int frame_max, int heartbeat,
                                                     const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

#endif
