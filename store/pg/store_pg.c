/* placeholder: being written */
typedef int cbm_placeholder_t;
