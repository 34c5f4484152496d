// One scenario of a real Node client against the gateway's compatible APIs, named by argv[2];
// tests/compat_clients/test_node_clients.py scripts the fake upstream, runs it, and checks
// the JSON it prints (and what the upstream received, and Redis).
//   GW=http://127.0.0.1:8000 KEY=cgw_... MODEL=claude node scenario.mjs openai-tools-stream
import Anthropic from "@anthropic-ai/sdk";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";
import { z } from "zod";

const { GW, KEY, MODEL } = process.env;
const ASK = "What is the weather in Paris?";
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const weather = (city) => `18 C and sunny in ${city}`;

// -- the official SDKs: a tool round trip (call, result, answer) -------------------------------

async function openaiTools(stream) {
  const client = new OpenAI({ baseURL: `${GW}/v1`, apiKey: KEY, maxRetries: 0 });
  const messages = [{ role: "user", content: ASK }];
  const ask = async () => {
    if (!stream) return (await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER] })).choices[0];
    const runner = client.chat.completions.stream({ model: MODEL, messages, tools: [WEATHER] });
    return (await runner.finalChatCompletion()).choices[0];
  };
  const first = await ask();
  const call = first.message.tool_calls[0];
  const args = JSON.parse(call.function.arguments);
  messages.push(first.message, { role: "tool", tool_call_id: call.id, content: weather(args.city) });
  const second = await ask();
  return {
    finish: [first.finish_reason, second.finish_reason],
    call: { id: call.id, name: call.function.name, args },
    answer: second.message.content,
  };
}

async function anthropicTools(stream) {
  const client = new Anthropic({ baseURL: GW, apiKey: KEY, maxRetries: 0 });
  const tools = [{ name: "get_weather", description: "The weather in a city", input_schema: WEATHER.function.parameters }];
  const messages = [{ role: "user", content: ASK }];
  const ask = async () => {
    const params = { model: MODEL, max_tokens: 300, messages, tools };
    return stream ? await client.messages.stream(params).finalMessage() : await client.messages.create(params);
  };
  const first = await ask();
  const use = first.content.find((b) => b.type === "tool_use");
  messages.push(
    { role: "assistant", content: first.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: weather(use.input.city) }] },
  );
  const second = await ask();
  return {
    finish: [first.stop_reason, second.stop_reason],
    call: { id: use.id, name: use.name, args: use.input },
    answer: second.content.filter((b) => b.type === "text").map((b) => b.text).join(""),
  };
}

// -- the Vercel AI SDK: tools (executed by the SDK between steps) and generateObject -----------

function aiModel(kind) {
  if (kind === "openai") return createOpenAI({ baseURL: `${GW}/v1`, apiKey: KEY }).chat(MODEL);
  return createAnthropic({ baseURL: `${GW}/v1`, apiKey: KEY })(MODEL);
}

const aiTools = {
  get_weather: tool({
    description: "The weather in a city",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => weather(city),
  }),
};

async function aiToolsRun(kind, stream) {
  const options = { model: aiModel(kind), tools: aiTools, stopWhen: stepCountIs(3), prompt: ASK, maxRetries: 0 };
  if (!stream) {
    const result = await generateText(options);
    return aiSteps(result.steps, result.text);
  }
  const result = streamText(options);
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part.type);
  }
  const summary = aiSteps(await result.steps, await result.text);
  return { ...summary, streamed: [...new Set(parts)] };
}

function aiSteps(steps, text) {
  const call = steps[0].toolCalls[0];
  return {
    finish: steps.map((s) => s.finishReason),
    call: { id: call.toolCallId, name: call.toolName, args: call.input },
    results: steps[0].toolResults.map((r) => r.output),
    answer: text,
  };
}

async function aiObject(kind) {
  const { object, finishReason, usage } = await generateObject({
    model: aiModel(kind),
    schema: z.object({ city: z.string(), temperature: z.number(), sunny: z.boolean() }),
    prompt: "The weather in Paris, as an object",
    maxRetries: 0,
  });
  return { object, finish: finishReason, usage: { input: usage.inputTokens, output: usage.outputTokens } };
}

const SCENARIOS = {
  "openai-tools": () => openaiTools(false),
  "openai-tools-stream": () => openaiTools(true),
  "anthropic-tools": () => anthropicTools(false),
  "anthropic-tools-stream": () => anthropicTools(true),
  "ai-openai-tools": () => aiToolsRun("openai", false),
  "ai-openai-tools-stream": () => aiToolsRun("openai", true),
  "ai-anthropic-tools": () => aiToolsRun("anthropic", false),
  "ai-anthropic-tools-stream": () => aiToolsRun("anthropic", true),
  "ai-openai-object": () => aiObject("openai"),
  "ai-anthropic-object": () => aiObject("anthropic"),
};

const run = SCENARIOS[process.argv[2]];
if (!run) {
  console.error(`unknown scenario ${process.argv[2]}; one of ${Object.keys(SCENARIOS).join(", ")}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await run()));
} catch (err) {
  console.error(err?.stack || String(err));
  if (err?.responseBody) console.error("response body:", err.responseBody);
  process.exit(1);
}
