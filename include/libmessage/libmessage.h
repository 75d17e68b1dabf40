/* SPDX-License-Identifier: MIT */
/* libmessage: everything — reactor, transports, services, the srvtime sample. */
#ifndef LIBMESSAGE_H
#define LIBMESSAGE_H

#include "reactor.h"
#include "transport.h"
#include "service.h"
#include "srvtime.h"

#endif
