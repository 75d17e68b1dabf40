/* Placeholder until backend_uring.c lands: io_uring reported as unsupported. */
#include <errno.h>

#include "backend.h"

static int uring_init(void **ret)
{
	(void)ret;
	return -ENOSYS;
}

const struct lm_backend_ops lm__backend_uring = {
	.name = "io_uring",
	.init = uring_init,
};
