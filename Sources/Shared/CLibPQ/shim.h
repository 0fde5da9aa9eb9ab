#ifndef C2D_CLIBPQ_SHIM_H
#define C2D_CLIBPQ_SHIM_H
#include <libpq-fe.h>
/* epoll, with which one thread waits for the sockets of connections that have statements in flight (SocketPoller):
   Swift's Glibc module leaves it out. */
#include <sys/epoll.h>
#endif
