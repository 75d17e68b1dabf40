/* SPDX-License-Identifier: MIT */
/* The library's version at run time (libmessage/version.h, generated). */
#include <libmessage/version.h>

const char *lm_version(void)
{
	return LM_VERSION_STRING;
}
