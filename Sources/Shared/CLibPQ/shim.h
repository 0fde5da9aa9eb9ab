#ifndef C2D_CLIBPQ_SHIM_H
#define C2D_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
