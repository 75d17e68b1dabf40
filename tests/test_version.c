/* SPDX-License-Identifier: MIT */
/* The version: generated header macros, lm_version() at run time, project(VERSION). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <libmessage/libmessage.h>

Test(version, header_matches_project_version)
{
	char v[64];

	/* LM_TEST_PROJECT_VERSION is project(VERSION), passed by tests/CMakeLists.txt. */
	snprintf(v, sizeof(v), "%d.%d.%d", LM_VERSION_MAJOR, LM_VERSION_MINOR, LM_VERSION_PATCH);
	cr_assert_str_eq(v, LM_TEST_PROJECT_VERSION);
	cr_assert_str_eq(LM_VERSION_STRING, LM_TEST_PROJECT_VERSION);
}

Test(version, run_time_matches_headers)
{
	const char *v = lm_version();

	cr_assert_not_null(v);
	cr_assert_str_eq(v, LM_VERSION_STRING);
	cr_assert_eq(lm_version(), v, "lm_version() is static storage");
}

Test(version, number_orders_versions)
{
	cr_assert_eq(LM_VERSION_NUMBER,
		     LM_VERSION_AT(LM_VERSION_MAJOR, LM_VERSION_MINOR, LM_VERSION_PATCH));
	cr_assert_gt(LM_VERSION_AT(0, 10, 0), LM_VERSION_AT(0, 9, 99));
	cr_assert_gt(LM_VERSION_AT(1, 0, 0), LM_VERSION_AT(0, 99, 99));
	cr_assert_geq(LM_VERSION_NUMBER, LM_VERSION_AT(0, 1, 0));
}
