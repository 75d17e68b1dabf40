/* SPDX-License-Identifier: MIT */
/* lm-bench: the table, the JSON lines and the SVG percentile chart. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "lm_bench.h"

static const char *impl_name(enum bench_impl i)
{
	static const char *const names[] = {"floor", "lm_conn", "lm_service", "lm_emit",
					    "loop",  "lm_sync", "floor-batch"};
	return names[i];
}

static void case_name(const struct bench_result *r, char *buf, size_t n)
{
	snprintf(buf, n, "%s %s", bench_mode_name(r->c.mode), impl_name(r->c.impl));
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

void bench_print_header(FILE *f)
{
	fprintf(f, "%-21s %-5s %-7s %-12s %4s %9s %9s %9s %9s %9s %10s %10s %7s %6s %6s\n", "case",
		"tp", "backend", "cpu", "n", "p50", "p90", "p99", "p99.9", "max", "msgs/s",
		"cpu_us/msg", "wake/s", "x50", "x99");
}

void bench_print_row(FILE *f, const struct bench_result *r)
{
	char name[40];
	case_name(r, name, sizeof(name));
	fprintf(f, "%-21s %-5s %-7s %-12s %4d ", name, bench_tp_name(r->c.tp),
		bench_backend_name(r->c.backend), r->cpu, r->c.peers);
	if (r->status) {
		fprintf(f, "%s: %s\n", r->status == 1 ? "n/a" : "FAILED", r->why);
		return;
	}
	const struct hist *h = r->hist;
	if (h && h->count)
		fprintf(f, "%9.1f %9.1f %9.1f %9.1f %9.1f ", us(hist_percentile(h, 50)),
			us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
			us(hist_percentile(h, 99.9)), us(h->max));
	else
		fprintf(f, "%9s %9s %9s %9s %9s ", "-", "-", "-", "-", "-");
	if (r->msgs_per_s > 0)
		fprintf(f, "%10.0f %10.2f ", r->msgs_per_s, r->cpu_us_per_msg);
	else
		fprintf(f, "%10s %10s ", "-", "-");
	if (r->wake_per_s >= 0)
		fprintf(f, "%7.1f ", r->wake_per_s);
	else
		fprintf(f, "%7s ", "-");
	const struct bench_result *fl = r->floor;
	if (fl && h && fl->hist && h->count && fl->hist->count)
		fprintf(f, "%6.2f %6.2f",
			(double)hist_percentile(h, 50) / (double)hist_percentile(fl->hist, 50),
			(double)hist_percentile(h, 99) / (double)hist_percentile(fl->hist, 99));
	else if (fl && r->c.mode == MODE_THROUGHPUT && r->msgs_per_s > 0)
		fprintf(f, "%6.2f %6s", fl->msgs_per_s / r->msgs_per_s, "-");
	else
		fprintf(f, "%6s %6s", "-", "-");
	if (fl && fl->c.impl == IMPL_FLOOR_BATCH)
		fputs("  (x: to floor-batch)", f);
	if (r->idle_clients)
		fprintf(f, "  +%d idle clients, server RSS %+.0f B/client", r->idle_clients,
			r->rss_per_idle_client);
	fputc('\n', f);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void bench_print_json(FILE *f, const struct bench_result *r, const struct bench_opts *o)
{
	fprintf(f, "{\"mode\":\"%s\",\"impl\":\"%s\",\"transport\":\"%s\",\"backend\":",
		bench_mode_name(r->c.mode), impl_name(r->c.impl), bench_tp_name(r->c.tp));
	if (r->c.backend)
		fprintf(f, "\"%s\"", bench_backend_name(r->c.backend));
	else
		fputs("null", f);
	fprintf(f, ",\"cpu\":\"%s\",\"peers\":%d,\"size\":%zu,\"status\":\"%s\"", r->cpu,
		r->c.peers, o->size,
		r->status == 0   ? "ok"
		: r->status == 1 ? "n/a"
				 : "failed");
	if (r->status) {
		fputs(",\"why\":", f);
		json_str(f, r->why);
		fputs("}\n", f);
		return;
	}
	const struct hist *h = r->hist;
	if (h && h->count)
		fprintf(f,
			",\"count\":%llu,\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,"
			"\"p999_us\":%.3f,\"max_us\":%.3f,\"min_us\":%.3f",
			(unsigned long long)h->count, us(hist_percentile(h, 50)),
			us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
			us(hist_percentile(h, 99.9)), us(h->max), us(h->min));
	fprintf(f,
		",\"msgs\":%llu,\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,\"cpu_us_per_msg\":%.3f",
		(unsigned long long)r->msgs, r->msgs_per_s, r->msgs_per_s * (double)o->size,
		r->cpu_us_per_msg);
	if (r->wake_per_s >= 0)
		fprintf(f, ",\"wake_per_s\":%.2f", r->wake_per_s);
	if (o->emit_in_cb && r->c.mode == MODE_SIGNAL &&
	    (r->c.impl == IMPL_CONN || r->c.impl == IMPL_SERVICE))
		fputs(",\"emit_from\":\"callback\"", f);
	if (r->idle_clients)
		fprintf(f, ",\"idle_clients\":%d,\"server_rss_per_idle_client\":%.1f",
			r->idle_clients, r->rss_per_idle_client);
	const struct bench_result *fl = r->floor;
	if (fl && h && fl->hist && h->count && fl->hist->count)
		fprintf(f, ",\"ratio_p50\":%.3f,\"ratio_p99\":%.3f,\"ratio_to\":\"%s\"",
			(double)hist_percentile(h, 50) / (double)hist_percentile(fl->hist, 50),
			(double)hist_percentile(h, 99) / (double)hist_percentile(fl->hist, 99),
			impl_name(fl->c.impl));
	fputs("}\n", f);
}

/* ---- SVG: latency (log) against percentile on the 1/(1-p) log scale ---- */

#define PW            640.0 /* the plot area */
#define PH            440.0
#define ML            70.0
#define MR            20.0
#define MT            40.0
#define MB            60.0
#define LEGEND_ROW    16.0
#define LEGEND_CHAR_W 7.5 /* a generous width of one 12 px sans-serif character */

/* Each series gets its own pair of colour and dash pattern: 10 x 4 before a
 * pair comes again. */
static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
				     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
static const char *const dashes[] = {"", " stroke-dasharray=\"7,3\"", " stroke-dasharray=\"2,2\"",
				     " stroke-dasharray=\"9,3,2,3\""};
#define N_COLORS (sizeof(colors) / sizeof(colors[0]))
#define N_DASHES (sizeof(dashes) / sizeof(dashes[0]))

static void legend_label(const struct bench_result *r, char *buf, size_t n)
{
	char name[40];

	case_name(r, name, sizeof(name));
	snprintf(buf, n, "%s %s %s %s n=%d", name, bench_tp_name(r->c.tp),
		 bench_backend_name(r->c.backend), r->cpu, r->c.peers);
}

int bench_write_plot(const char *path, struct bench_result *rs, int n)
{
	double lo = INFINITY, hi = 0, xmax = 4; /* x: log10(1/(1-p)), 4 is 99.99 % */
	size_t longest = 0;
	int series = 0;
	char label[160];
	for (int i = 0; i < n; i++) {
		const struct hist *h = rs[i].status ? NULL : rs[i].hist;
		if (!h || !h->count)
			continue;
		lo = fmin(lo, log10(fmax(us(h->min), 0.01)));
		hi = fmax(hi, log10(fmax(us(h->max), 0.01)));
		legend_label(&rs[i], label, sizeof(label));
		longest = strlen(label) > longest ? strlen(label) : longest;
		series++;
	}
	if (!(lo < INFINITY)) {
		lo = 0;
		hi = 1;
	}
	lo = floor(lo);
	hi = ceil(hi);
	if (hi <= lo)
		hi = lo + 1;
	/* The legend sits right of the plot, as wide as its longest label and
	 * as tall as its rows: nothing is cut off. */
	double lx = ML + PW + 20, lw = 40 + LEGEND_CHAR_W * (double)longest;
	double W = lx + lw + MR, H = fmax(MT + PH + MB, MT + 14 + LEGEND_ROW * series + MB);
	double pw = PW, ph = PH;
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		"<text x=\"%.0f\" y=\"24\" font-size=\"15\">lm-bench: latency by percentile "
		"(log scales)</text>\n",
		W, H, ML);
	const char *px[] = {"0%", "90%", "99%", "99.9%", "99.99%"};
	for (int k = 0; k <= 4; k++) {
		double x = ML + pw * k / xmax;
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
			x, MT, x, MT + ph, x, MT + ph + 18, px[k]);
	}
	double x50 = ML + pw * log10(2) / xmax;
	fprintf(f,
		"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">50%%</text>\n",
		x50, MT, x50, MT + ph, x50, MT + ph + 18);
	for (double d = lo; d <= hi; d++) {
		double y = MT + ph - ph * (d - lo) / (hi - lo);
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g µs</text>\n",
			ML, y, ML + pw, y, ML - 6, y + 4, pow(10, d));
	}
	fprintf(f,
		"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">percentile</text>\n"
		"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
		"stroke=\"#444\"/>\n",
		ML + pw / 2, MT + ph + 40, ML, MT, pw, ph);
	int shown = 0;
	for (int i = 0; i < n; i++) {
		const struct hist *h = rs[i].status ? NULL : rs[i].hist;
		if (!h || !h->count)
			continue;
		const char *col = colors[(size_t)shown % N_COLORS];
		const char *dash = dashes[((size_t)shown / N_COLORS) % N_DASHES];
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"",
			col, dash);
		/* Stop where the data runs out: 1/(1-p) cannot pass the count. */
		double top = fmin(xmax, log10((double)h->count));
		for (int k = 0; k <= 200; k++) {
			double xv = top * k / 200.0;
			double p = 100.0 * (1.0 - pow(10, -xv));
			double y = log10(fmax(us(hist_percentile(h, p)), 0.01));
			fprintf(f, "%.1f,%.1f ", ML + pw * xv / xmax,
				MT + ph - ph * (y - lo) / (hi - lo));
		}
		fputs("\"/>\n", f);
		legend_label(&rs[i], label, sizeof(label));
		double ly = MT + 14 + LEGEND_ROW * shown;
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"2\"%s/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
			lx, ly - 4, lx + 30, ly - 4, col, dash, lx + 36, ly, label);
		shown++;
	}
	fputs("</svg>\n", f);
	return fclose(f) == 0 ? 0 : -errno;
}
