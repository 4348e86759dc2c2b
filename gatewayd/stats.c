#include "stats.h"

struct stats stats;
