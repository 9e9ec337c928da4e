# logistic-r: a logistic regression with glm on the mounted cohort.
#
# Reads every *.csv under /data/cohort/, the parameter `outcome` from /input/params.json and, on
# a sequential route, the previous stops' pooling sums from /input/state/state.csv. Models
# `outcome ~ age + bmi + sex + smoker` (binomial, logit link), where the outcome is 1 when the
# patient's diagnosis is the one named. Writes
#   /output/coefficients.csv  term, n, estimate, std_error, z_value, p_value (this stop's fit)
#   /output/model.csv         model, n, df_null, df_residual, aic (this stop's fit)
#   /output/pooled.csv        term, n, estimate, std_error: inverse-variance pooling of every
#                             stop's estimates so far (a fixed-effect meta-analysis)
#   /output/state.csv         term, n, sum_weight, sum_weighted_estimate: the pooling's sums
# Numbers are rounded to 6 decimals: enough for the model, and never a digit run that an output
# check could take for an identifier.

params <- local({
  text <- if (file.exists("/input/params.json")) paste(readLines("/input/params.json", warn = FALSE), collapse = "") else "{}"
  value <- regmatches(text, regexec('"outcome"\\s*:\\s*"([^"]*)"', text))[[1]]
  list(outcome = if (length(value) == 2) value[2] else "diabetes")
})

files <- sort(list.files("/data/cohort", pattern = "\\.csv$", full.names = TRUE))
if (length(files) == 0) stop("no CSV file in /data/cohort")
cohort <- do.call(rbind, lapply(files, read.csv, stringsAsFactors = FALSE))
cohort$outcome <- as.integer(cohort$diagnosis == params$outcome)
cohort$sex <- factor(cohort$sex, levels = c("F", "M"))
cohort$smoker <- factor(cohort$smoker, levels = c("no", "yes"))

fit <- glm(outcome ~ age + bmi + sex + smoker, family = binomial(link = "logit"), data = cohort)
table <- summary(fit)$coefficients
# Every table carries `n`, the patients the numbers rest on: the station checks cell sizes in
# the count columns, and a table without one goes to review.
local_fit <- data.frame(
  term = rownames(table),
  n = nobs(fit),
  estimate = round(table[, 1], 6),
  std_error = round(table[, 2], 6),
  z_value = round(table[, 3], 6),
  p_value = round(table[, 4], 6),
  stringsAsFactors = FALSE
)
write.csv(local_fit, "/output/coefficients.csv", row.names = FALSE, quote = FALSE)
write.csv(
  data.frame(
    model = paste(params$outcome, "~ age + bmi + sex + smoker"),
    n = nobs(fit), df_null = fit$df.null, df_residual = fit$df.residual, aic = round(fit$aic, 6)
  ),
  "/output/model.csv", row.names = FALSE, quote = FALSE
)

# The state carries sums, never rows: per term the patients so far and the inverse-variance
# weights and weighted estimates summed over the stops so far. A stop that handed on the rows it
# received would be refused by the next station's checks (rows identical to the state it
# received), and rightly: that is how data would be smuggled along a route.
weights <- 1 / table[, 2]^2
sums <- data.frame(
  term = rownames(table),
  n = nobs(fit),
  sum_weight = weights,
  sum_weighted_estimate = weights * table[, 1],
  stringsAsFactors = FALSE
)
if (file.exists("/input/state/state.csv")) {
  previous <- read.csv("/input/state/state.csv", stringsAsFactors = FALSE)
  previous <- previous[match(sums$term, previous$term), ]
  sums$n <- sums$n + previous$n
  sums$sum_weight <- sums$sum_weight + previous$sum_weight
  sums$sum_weighted_estimate <- sums$sum_weighted_estimate + previous$sum_weighted_estimate
}
state <- sums
state$sum_weight <- signif(state$sum_weight, 8)
state$sum_weighted_estimate <- signif(state$sum_weighted_estimate, 8)
write.csv(state, "/output/state.csv", row.names = FALSE, quote = FALSE)

pooled <- data.frame(
  term = sums$term,
  n = sums$n,
  estimate = round(sums$sum_weighted_estimate / sums$sum_weight, 6),
  std_error = round(sqrt(1 / sums$sum_weight), 6)
)
write.csv(pooled, "/output/pooled.csv", row.names = FALSE, quote = FALSE)
message(sprintf("logistic-r: %d patients here, %d pooled, %d terms", nobs(fit), pooled$n[1], nrow(local_fit)))
