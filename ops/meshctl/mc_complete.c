/* mc_complete.c: meshctl completion bash: a bash completion script generated from the
 * command table (mc_commands) and each command's getopt_long table, so a new command or
 * option completes without a second list to keep. */
#include <stdlib.h>
#include <string.h>

#include "mb_sagadef.h"
#include "mc.h"
#include "mc_out.h"

static void completion_usage(FILE *f)
{
    fprintf(f, "usage: meshctl completion bash\n"
               "\n"
               "Prints a bash completion script for meshctl: commands, sub-commands, each\n"
               "command's options, the values of -o, --status, --saga and --from-step/--step,\n"
               "and order ids (from `meshctl jobs -o name`) or worker ids where a command takes\n"
               "them.  Load it now with\n"
               "    source <(meshctl completion bash)\n"
               "or for every shell: meshctl completion bash > "
               "/etc/bash_completion.d/meshctl\n");
}

/* completion's options (getopt_long; also the completion's). */
const struct option mc_completion_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* `mapfile -t COMPREPLY < <(compgen -W "<words>" -- "$cur")` */
static void reply_words_begin(FILE *f, const char *indent)
{
    fprintf(f, "%smapfile -t COMPREPLY < <(compgen -W \"", indent);
}

static void reply_words_end(FILE *f)
{
    fputs("\" -- \"$cur\")\n", f);
}

static void step_names(FILE *f)
{
    int first = 1;

    for (size_t i = 0; i < mb_saga_defs_count; i++) {
        for (int k = 0; k < mb_saga_defs[i]->nsteps; k++) {
            const char *name = mb_saga_defs[i]->steps[k]->name;
            int seen = 0;
            /* the same step name in two sagas is offered once */
            for (size_t p = 0; p <= i && !seen; p++)
                for (int q = 0; q < (p == i ? k : mb_saga_defs[p]->nsteps) && !seen; q++)
                    seen = strcmp(mb_saga_defs[p]->steps[q]->name, name) == 0;
            if (!seen) {
                fprintf(f, "%s%s", first ? "" : " ", name);
                first = 0;
            }
        }
    }
}

/* 1 if the option's values have a completion of their own (value_arm). */
static int has_values(const struct option *o)
{
    static const char *const known[] = {"status", "saga", "from-step", "step", "edit", NULL};

    for (int i = 0; known[i]; i++)
        if (strcmp(o->name, known[i]) == 0)
            return 1;
    return 0;
}

/* The completion of an option's value, as a case arm. */
static void value_arm(FILE *f, const struct option *o)
{
    fprintf(f, "        --%s)\n", o->name);
    if (strcmp(o->name, "status") == 0) {
        const char *words[64];
        mc_status_words(words, sizeof(words) / sizeof(words[0]));
        reply_words_begin(f, "            ");
        for (int i = 0; words[i]; i++)
            fprintf(f, "%s%s", i ? " " : "", words[i]);
        reply_words_end(f);
    } else if (strcmp(o->name, "saga") == 0) {
        reply_words_begin(f, "            ");
        for (size_t i = 0; i < mb_saga_defs_count; i++)
            fprintf(f, "%s%s", i ? " " : "", mb_saga_defs[i]->name);
        reply_words_end(f);
    } else if (strcmp(o->name, "edit") == 0) {
        fputs("            mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n", f);
    } else { /* from-step, step */
        reply_words_begin(f, "            ");
        step_names(f);
        reply_words_end(f);
    }
    fputs("            return 0\n            ;;\n", f);
}

/* An option that takes a value and is not -o (handled for every command). */
static int takes_value(const struct option *o)
{
    return o->has_arg != no_argument && strcmp(o->name, "output") != 0;
}

static void command_arm(FILE *f, const mc_command *cmd)
{
    const struct option *o;
    int values = 0, free_values = 0;

    fprintf(f, "    %s)\n", cmd->name);
    for (o = cmd->opts; o->name; o++) {
        values += takes_value(o);
        free_values += takes_value(o) && !has_values(o);
    }
    if (values) {
        fputs("        case \"$prev\" in\n", f);
        for (o = cmd->opts; o->name; o++)
            if (takes_value(o) && has_values(o))
                value_arm(f, o);
        if (free_values) { /* a value of the user's own (a duration, a reason): nothing */
            fputs("        ", f);
            for (o = cmd->opts, values = 0; o->name; o++)
                if (takes_value(o) && !has_values(o))
                    fprintf(f, "%s--%s", values++ ? " | " : "", o->name);
            fputs(")\n            return 0\n            ;;\n", f);
        }
        fputs("        esac\n", f);
    }
    fputs("        opts=\"", f);
    for (o = cmd->opts; o->name; o++)
        fprintf(f, "%s--%s%s", o == cmd->opts ? "" : " ", o->name,
                strcmp(o->name, "output") == 0 ? " -o" : "");
    fputs("\"\n        subs=\"", f);
    for (int i = 0; cmd->subs && cmd->subs[i]; i++)
        fprintf(f, "%s%s", i ? " " : "", cmd->subs[i]);
    fprintf(f, "\"\n        operand=\"%s\"\n        ;;\n",
            cmd->operand == MC_OPERAND_JOB      ? "jobs"
            : cmd->operand == MC_OPERAND_WORKER ? "workers"
                                                : "none");
}

static void print_bash(FILE *f)
{
    fputs("# bash completion for meshctl, generated by `meshctl completion bash` from meshctl's\n"
          "# own command and option tables.  Load: source <(meshctl completion bash)\n"
          "_meshctl() {\n"
          "    local cur prev cmd opts subs operand w i\n"
          "    COMPREPLY=()\n"
          "    cur=${COMP_WORDS[COMP_CWORD]}\n"
          "    prev=\n"
          "    if [ \"$COMP_CWORD\" -gt 0 ]; then prev=${COMP_WORDS[COMP_CWORD - 1]}; fi\n"
          "    if [ \"$COMP_CWORD\" -le 1 ]; then\n",
          f);
    reply_words_begin(f, "        ");
    for (size_t i = 0; i < mc_commands_count; i++)
        fprintf(f, "%s ", mc_commands[i].name);
    fputs("--help --version", f);
    reply_words_end(f);
    fputs("        return 0\n"
          "    fi\n"
          "    cmd=${COMP_WORDS[1]}\n"
          "    case \"$prev\" in\n"
          "    -o | --output)\n",
          f);
    reply_words_begin(f, "        ");
    for (int i = 0; mc_out_formats[i]; i++)
        fprintf(f, "%s%s", i ? " " : "", mc_out_formats[i]);
    reply_words_end(f);
    fputs("        return 0\n"
          "        ;;\n"
          "    esac\n"
          "    case \"$cmd\" in\n",
          f);
    for (size_t i = 0; i < mc_commands_count; i++)
        command_arm(f, &mc_commands[i]);
    fputs("    *) return 0 ;;\n"
          "    esac\n"
          "    if [[ $cur == -* ]]; then\n"
          "        mapfile -t COMPREPLY < <(compgen -W \"$opts\" -- \"$cur\")\n"
          "        return 0\n"
          "    fi\n"
          "    # a sub-command first (the first word after the command that is not an option)\n"
          "    if [ -n \"$subs\" ]; then\n"
          "        w=\n"
          "        for ((i = 2; i < COMP_CWORD; i++)); do\n"
          "            case \"${COMP_WORDS[i]}\" in -*) ;; *) w=${COMP_WORDS[i]}; break ;; esac\n"
          "        done\n"
          "        if [ -z \"$w\" ]; then\n"
          "            mapfile -t COMPREPLY < <(compgen -W \"$subs\" -- \"$cur\")\n"
          "        fi\n"
          "        return 0\n"
          "    fi\n"
          "    # operands: ids read from the store by this same meshctl (quietly, bounded)\n"
          "    case \"$operand\" in\n"
          "    jobs | workers)\n"
          "        mapfile -t COMPREPLY < <(compgen -W \"$(timeout 5 \"${COMP_WORDS[0]}\" "
          "\"$operand\" -o name 2>/dev/null)\" -- \"$cur\")\n"
          "        ;;\n"
          "    esac\n"
          "    return 0\n"
          "}\n"
          "complete -F _meshctl meshctl\n",
          f);
}

int mc_cmd_completion(mc_ctx *c, int argc, char **argv)
{
    int opt;

    (void)c;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", mc_completion_opts, NULL)) != -1) {
        if (opt == 'h') {
            completion_usage(stdout);
            return MC_EXIT_OK;
        }
        completion_usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (optind + 1 != argc || strcmp(argv[optind], "bash") != 0)
        return mc_fail(MC_EXIT_USAGE, "completion: want 'bash' (the one shell supported)");
    print_bash(stdout);
    return MC_EXIT_OK;
}
